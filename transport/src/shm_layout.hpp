#pragma once
// The layout of a ShmChannel's segment and what travels in it (see shm_channel.hpp for why).
// Private to the channel; white-box tests use it to write garbage where it hurts.

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace zmp::transport::shm_layout {

// The segment: [header page][control page, ring 0][control page, ring 1][ring 0 bytes][ring 1 bytes]
// Ring d is written by side d and read by side 1 - d.

constexpr std::uint64_t kSegmentMagic = 0x31676e6972706d7aULL;  // "zmpring1"
constexpr std::uint32_t kSegmentVersion = 1;
constexpr std::size_t kPage = 4096;
constexpr std::size_t kMinRing = 4096;
constexpr std::size_t kMaxRing = std::size_t{64} << 20;

struct SegmentHeader {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t ring_bytes;
};

enum Mode : std::uint32_t { kRingMode = 0, kSocketMode = 1 };

// The reader's doorbell word: a state in its low two bits, awake (spinning or busy: writers do not
// ring), armed (about to sleep or asleep: the next writer rings) or rung (a doorbell byte is on its
// way), and above them a generation that the reader bumps each time it arms. A writer marks the
// word rung only if it is still the arming it saw, after sending its byte: one that was delayed
// between the two cannot mark a later arming as rung (the reader would sleep through the next
// message), and one that dies between them has sent its byte.
enum Bell : std::uint32_t { kAwake = 0, kArmed = 1, kRung = 2 };

struct alignas(64) Doorbell {
    std::atomic<std::uint32_t> word;

    static constexpr std::uint32_t state_of(std::uint32_t w) { return w & 3; }
    // Reader, before it looks at the ring a last time and sleeps: a full barrier.
    void arm() {
        const std::uint32_t w = word.load(std::memory_order_relaxed);
        word.exchange((((w >> 2) + 1) << 2) | kArmed, std::memory_order_seq_cst);
    }
    // Reader, spinning or busy: writers need not ring.
    void wake() {
        const std::uint32_t w = word.load(std::memory_order_relaxed);
        if (state_of(w) != kAwake) word.store((w & ~3u) | kAwake, std::memory_order_relaxed);
    }
};

struct alignas(64) ProducerSide {
    pthread_mutex_t lock;
    std::atomic<std::uint64_t> tail;            // bytes published
    std::atomic<std::uint32_t> mode;            // where the next message goes
    std::atomic<std::uint32_t> in_message;      // chunks of an unfinished message are published
    std::atomic<std::uint32_t> marker_pending;  // a marker is published, its frame not yet sent
    std::atomic<std::uint32_t> in_frame;        // a frame is being written to the socket
    std::atomic<std::uint32_t> reader_gone;     // EPIPE seen: every copy of the reader's end is closed
    std::atomic<std::uint32_t> torn;            // a writer died inside a frame: the stream is lost
};

struct alignas(64) ConsumerSide {
    pthread_mutex_t lock;
    std::atomic<std::uint64_t> head;        // bytes consumed
    std::atomic<std::uint32_t> mode;        // where the next message comes from
    std::atomic<std::uint32_t> in_message;  // a reader holds part of a message
    std::atomic<std::uint32_t> broken;      // a reader met garbage, or died inside a message
};

struct Control {
    ProducerSide producer;
    ConsumerSide consumer;
    Doorbell bell;
};
static_assert(sizeof(Control) <= kPage);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "shared-memory atomics must be plain words");

constexpr std::size_t segment_bytes(std::size_t ring) { return 3 * kPage + 2 * ring; }
constexpr std::size_t control_offset(int ring_index) { return kPage * (1 + static_cast<std::size_t>(ring_index)); }
constexpr std::size_t data_offset(std::size_t ring, int ring_index) {
    return 3 * kPage + ring * static_cast<std::size_t>(ring_index);
}

// ---- what travels in a ring --------------------------------------------------------------------

// Records start at 16-byte boundaries and are 16-byte headers followed by their data, padded to 16:
// a header never wraps around the ring's end (data may).
struct Record {
    std::uint16_t type;
    std::uint16_t flags;
    std::uint32_t length;  // data bytes in this record
    std::uint64_t total;   // the whole message's size
};
static_assert(sizeof(Record) == 16);
constexpr std::size_t kRecord = sizeof(Record);
enum RecordType : std::uint16_t { kChunk = 1, kToSocket = 2 };  // kToSocket: the stream goes on in the socket
enum RecordFlags : std::uint16_t { kFirst = 1, kLast = 2 };

constexpr std::uint64_t pad16(std::uint64_t n) { return (n + 15) & ~std::uint64_t{15}; }

// ---- what travels on the socket of an end with a ring ---------------------------------------
//
// Doorbells (single kBell bytes) and frames: kTag, a FrameHeader, the payload; descriptors ride on
// the frame's first byte. A frame holds a whole message, the rest of one whose start went through
// the ring, or an abort of the message in progress (after a writer died inside it).

constexpr unsigned char kBell = 0xB5;
constexpr unsigned char kTag = 0xF5;

struct FrameHeader {
    std::uint64_t size;
    std::uint32_t nfds;
    std::uint16_t magic;
    std::uint8_t kind;
    std::uint8_t next;  // Mode of the message after this one
};
static_assert(sizeof(FrameHeader) == 16);
constexpr std::uint16_t kFrameMagic = 0x467a;
enum FrameKind : std::uint8_t { kWhole = 1, kRest = 2, kAbort = 3 };

}  // namespace zmp::transport::shm_layout
