// The public authkey calls: the transport's key files, and the run's key.
#include "zmp/authkey.hpp"

#include <type_traits>

#include "runtime/run.hpp"
#include "zmp/transport/security.hpp"

namespace zmp {

static_assert(std::is_same_v<Authkey, transport::Authkey>, "one authkey type for every layer");

Authkey generate_authkey() { return transport::generate_authkey(); }

Authkey read_authkey_file(const std::string& path) { return transport::read_authkey_file(path); }

void write_authkey_file(const std::string& path, const Authkey& key) { transport::write_authkey_file(path, key); }

const Authkey& current_authkey() { return detail::this_run().authkey(); }

}  // namespace zmp
