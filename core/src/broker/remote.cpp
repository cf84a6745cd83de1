// zmp::serve and zmp::connect (zmp/remote.hpp): the public face of the broker across hosts.
#include "zmp/remote.hpp"

#include <cstdio>

#include "broker/client.hpp"
#include "runtime/run.hpp"
#include "zmp/errors.hpp"

namespace zmp {

namespace {

void warn_insecure(const std::string& what) {
    std::fprintf(stderr,
                 "zmp: warning: %s uses plain tcp: anyone who reaches it is admitted and everything travels in "
                 "clear text\n",
                 what.c_str());
}

void join(const std::string& endpoint, const transport::TcpSecurity& security, std::chrono::milliseconds timeout) {
    detail::broker::BrokerLink& link = detail::broker::BrokerLink::join(endpoint, security, timeout);
    detail::this_run().set_broker_endpoint(link.endpoint());
}

}  // namespace

std::string serve(const std::string& endpoint, const ServeOptions& options) {
    if (options.insecure && options.authkey) throw ValueError("zmp::serve: an insecure endpoint takes no authkey");
    const transport::TcpSecurity security =
        options.insecure ? transport::TcpSecurity::insecure()
                         : transport::TcpSecurity::curve(options.authkey ? *options.authkey : current_authkey());
    std::string bound = detail::serve_embedded_tcp(endpoint, security);
    if (options.insecure) warn_insecure("the broker at " + bound);
    return bound;
}

void connect(const std::string& endpoint, const Authkey& authkey, std::chrono::milliseconds timeout) {
    join(endpoint, transport::TcpSecurity::curve(authkey), timeout);
}

void connect_insecure(const std::string& endpoint, std::chrono::milliseconds timeout) {
    warn_insecure("the link to the broker at " + endpoint);
    join(endpoint, transport::TcpSecurity::insecure(), timeout);
}

}  // namespace zmp
