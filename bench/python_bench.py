#!/usr/bin/env python3
"""Python multiprocessing's figures for zmp's benchmark rows, measured the same way as zmp's.

    python3 bench/python_bench.py --list
    python3 bench/python_bench.py <row> [--quick]     -> one JSON line {"name", "unit", "value"}
"""
import json
import logging
import multiprocessing as mp
import pickle
import statistics
import sys
import threading
import time

ROWS = {}


def row(name, unit):
    def register(fn):
        ROWS[name] = (unit, fn)
        return fn
    return register


def n(quick, full):
    return max(1, full // 5) if quick else full


def seconds_per_op(rounds, per_round, fn):
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        samples.append((time.perf_counter() - start) / per_round)
    return statistics.median(samples)


def _nothing():
    pass


def _start_join(method, quick, full):
    ctx = mp.get_context(method)
    warm = ctx.Process(target=_nothing)
    warm.start()
    warm.join()

    def once():
        p = ctx.Process(target=_nothing)
        p.start()
        p.join()
    return 1e3 * seconds_per_op(5, n(quick, full), once)


@row("process.start_join.fork", "ms")
def start_join_fork(quick):
    return _start_join("fork", quick, 40)


@row("process.start_join.spawn", "ms")
def start_join_spawn(quick):
    return _start_join("spawn", quick, 10)


@row("process.start_join.forkserver", "ms")
def start_join_forkserver(quick):
    return _start_join("forkserver", quick, 40)


def _echo(conn, inherited):
    inherited.close()  # the forked child holds a copy of the parent's end too
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def _pipe_rtt_us(quick, size, per_round):
    here, there = mp.get_context("fork").Pipe()
    p = mp.get_context("fork").Process(target=_echo, args=(there, here))
    p.start()
    there.close()
    payload = b"x" * size
    for _ in range(10):
        here.send_bytes(payload)
        here.recv_bytes()

    def rtt():
        here.send_bytes(payload)
        here.recv_bytes()
    s = seconds_per_op(5, n(quick, per_round), rtt)
    here.close()
    p.join()
    return s * 1e6


@row("pipe.rtt.1B", "us")
def pipe_1b(quick):
    return _pipe_rtt_us(quick, 1, 5000)


@row("pipe.rtt.1KiB", "us")
def pipe_1k(quick):
    return _pipe_rtt_us(quick, 1024, 5000)


@row("pipe.rtt.1MiB", "us")
def pipe_1m(quick):
    return _pipe_rtt_us(quick, 1 << 20, 200)


def _pinger(here, there, ready, results, i, quick):
    there.close()
    payload = b"x"
    for _ in range(10):
        here.send_bytes(payload)
        here.recv_bytes()
    ready.wait()  # all pairs measure at the same time

    def rtt():
        here.send_bytes(payload)
        here.recv_bytes()
    results[i] = 1e6 * seconds_per_op(5, n(quick, 2000), rtt)


@row("pipe.rtt.1B.oversub", "us")
def pipe_1b_oversub(quick):
    pairs = 4  # 8 processes: more than this machine's 2 cores
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(pairs)
    results = ctx.Array("d", pairs)
    processes = []
    for i in range(pairs):
        here, there = ctx.Pipe()
        processes.append(ctx.Process(target=_echo, args=(there, here)))
        processes.append(ctx.Process(target=_pinger, args=(here, there, ready, results, i, quick)))
        for p in processes[-2:]:
            p.start()
        here.close()
        there.close()
    for p in processes:
        p.join()
    return sum(results) / pairs


@row("codec.int", "ns")
def codec_int(quick):
    counter = [0]

    def once():
        counter[0] += 1
        pickle.loads(pickle.dumps(counter[0]))
    return 1e9 * seconds_per_op(5, n(quick, 200000), once)


def _twice(x):
    return 2 * x


def _is_prime(n):
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True


def _count_block(start):
    return sum(1 for n in range(start, start + 20000) if _is_prime(n))


def _map_rate(quick, chunksize):
    data = list(range(n(quick, 200000)))
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_twice, [1] * 1000, 1)
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            out = pool.map(_twice, data, chunksize)
            rates.append(len(out) / (time.perf_counter() - start))
    return statistics.median(rates)


@row("pool.map.chunk1", "ops/s")
def pool_map_chunk1(quick):
    return _map_rate(quick, 1)


@row("pool.map.default", "ops/s")
def pool_map_default(quick):
    return _map_rate(quick, None)


@row("pool.apply.rtt", "us")
def pool_apply_rtt(quick):
    with mp.get_context("fork").Pool(2) as pool:
        for _ in range(100):
            pool.apply_async(_twice, (1,)).get()
        return 1e6 * seconds_per_op(5, n(quick, 2000), lambda: pool.apply_async(_twice, (1,)).get())


# Python has no pool whose workers join over tcp: beside zmp's .tcp rows stands its local Pool,
# measured the same way (what a user leaving Python's Pool for zmp across hosts compares against).
@row("pool.map.chunk1.tcp", "ops/s")
def pool_map_chunk1_tcp(quick):
    return _map_rate(quick, 1)


@row("pool.apply.rtt.tcp", "us")
def pool_apply_rtt_tcp(quick):
    return pool_apply_rtt(quick)


@row("pool.speedup.cpu", "x")
def pool_speedup_cpu(quick):
    blocks = [b * 20000 for b in range(12 if quick else 30)]
    start = time.perf_counter()
    serial = sum(_count_block(b) for b in blocks)
    serial_time = time.perf_counter() - start
    with mp.get_context("fork").Pool(2) as pool:
        pool.apply(_count_block, (0,))
        start = time.perf_counter()
        parallel = sum(pool.map(_count_block, blocks, 1))
        parallel_time = time.perf_counter() - start
    assert parallel == serial
    return serial_time / parallel_time


def _locked_increment(v):
    with v.get_lock():
        v.value += 1


@row("value.incr.1p", "ns")
def value_incr_1p(quick):
    v = mp.get_context("fork").Value("l", 0)
    return 1e9 * seconds_per_op(5, n(quick, 200000), lambda: _locked_increment(v))


def _increment_rounds(v, conn, inherited, per_round):
    inherited.close()
    while conn.recv():
        for _ in range(per_round):
            _locked_increment(v)
        conn.send(True)


@row("value.incr.2p", "ns")
def value_incr_2p(quick):
    """ns per increment while this process and one child each run a round of them at once."""
    ctx = mp.get_context("fork")
    v = ctx.Value("l", 0)
    per_round = n(quick, 100000)
    here, there = ctx.Pipe()
    partner = ctx.Process(target=_increment_rounds, args=(v, there, here, per_round))
    partner.start()
    there.close()
    samples = []
    for round_ in range(6):
        start = time.perf_counter()
        here.send(True)
        for _ in range(per_round):
            _locked_increment(v)
        here.recv()
        if round_ > 0:
            samples.append((time.perf_counter() - start) / (2 * per_round))
    here.send(False)
    partner.join()
    return 1e9 * statistics.median(samples)


@row("lock.uncontended", "ns")
def lock_uncontended(quick):
    # A tight loop with the bound methods at hand: Python's best case, no helper call per pair.
    lock = mp.get_context("fork").Lock()
    acquire, release = lock.acquire, lock.release
    per_round = n(quick, 500000)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_round):
            acquire()
            release()
        samples.append((time.perf_counter() - start) / per_round)
    return 1e9 * statistics.median(samples)


def _two_processes(quick, full, target, args, once, per_iteration):
    """Times once() here while a forked child runs target(*args, total), the other half of each
    iteration; microseconds per iteration / per_iteration."""
    ctx = mp.get_context("fork")
    per_round, warm = n(quick, full), 20
    p = ctx.Process(target=target, args=args + (warm + 5 * per_round,))
    p.start()
    for _ in range(warm):
        once()
    s = seconds_per_op(5, per_round, once)
    p.join()
    return s * 1e6 / per_iteration


def _lock_pong(ping, pong, total):
    for _ in range(total):
        ping.acquire()
        pong.release()


@row("lock.pingpong", "us")
def lock_pingpong(quick):
    # Two Locks as binary semaphores (any process may release one): two hand-offs per iteration.
    ctx = mp.get_context("fork")
    ping, pong = ctx.Lock(), ctx.Lock()
    ping.acquire()
    pong.acquire()

    def once():
        ping.release()
        pong.acquire()
    return _two_processes(quick, 5000, _lock_pong, (ping, pong), once, 2)


def _event_pong(there, back, total):
    for _ in range(total):
        there.wait()
        there.clear()
        back.set()


@row("event.wake", "us")
def event_wake(quick):
    ctx = mp.get_context("fork")
    there, back = ctx.Event(), ctx.Event()

    def once():
        there.set()
        back.wait()
        back.clear()
    return _two_processes(quick, 5000, _event_pong, (there, back), once, 2)


def _barrier_loop(barrier, total):
    for _ in range(total):
        barrier.wait()


@row("barrier.wait2", "us")
def barrier_wait2(quick):
    barrier = mp.get_context("fork").Barrier(2)
    return _two_processes(quick, 2000, _barrier_loop, (barrier,), barrier.wait, 1)


def _queue_producer(q, go, size, warm, rounds, per_round):
    item = b"x" * size
    for _ in range(warm):
        q.put(item)
    for _ in range(rounds):
        go.acquire()
        for _ in range(per_round):
            q.put(item)


def _queue_rate(quick, size, full):
    """Items per second from a child's Queue.put to this process's get: median of 3 rounds."""
    ctx = mp.get_context("fork")
    per_round, warm, rounds = n(quick, full), 1000, 3
    q, go = ctx.Queue(), ctx.Semaphore(0)
    p = ctx.Process(target=_queue_producer, args=(q, go, size, warm, rounds, per_round))
    p.start()
    get = q.get
    for _ in range(warm):
        get()
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        go.release()
        for _ in range(per_round):
            get()
        rates.append(per_round / (time.perf_counter() - start))
    p.join()
    return statistics.median(rates)


# A tenth of the item counts zmp's and the floor's rows move (the rate is what is compared):
# at Python's rate these take as long as those.
@row("queue.thr.16B", "ops/s")
def queue_thr_16b(quick):
    return _queue_rate(quick, 16, 100000)


@row("queue.thr.1KiB", "ops/s")
def queue_thr_1kib(quick):
    return _queue_rate(quick, 1024, 50000)


def _queue_put_many(q, go, count):
    item = b"x" * 16
    go.acquire()
    for _ in range(count):
        q.put(item)


def _queue_drain(q):
    while q.get():
        pass


@row("queue.thr.4x4", "ops/s")
def queue_thr_4x4(quick):
    """4 producer processes -> 4 consumer processes, 16 B items; sentinels (b"") once the
    producers have exited; from the go signal to the last consumer's exit."""
    ctx = mp.get_context("fork")
    side = 4
    per_producer = n(quick, 100000) // side
    q, go = ctx.Queue(), ctx.Semaphore(0)
    consumers = [ctx.Process(target=_queue_drain, args=(q,)) for _ in range(side)]
    producers = [ctx.Process(target=_queue_put_many, args=(q, go, per_producer)) for _ in range(side)]
    for p in consumers + producers:
        p.start()
    start = time.perf_counter()
    for _ in range(side):
        go.release()
    for p in producers:
        p.join()
    for _ in range(side):
        q.put(b"")
    for p in consumers:
        p.join()
    return side * per_producer / (time.perf_counter() - start)


def _log_producer(q, go, warm, rounds, per_round):
    import logging.handlers
    logger = logging.getLogger("bench")
    logger.handlers = [logging.handlers.QueueHandler(q)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for i in range(warm):
        logger.info("record %d of %s", i, "bench")
    for _ in range(rounds):
        go.acquire()
        for i in range(per_round):
            logger.info("record %d of %s", i, "bench")


class _CountingHandler(logging.Handler):
    """Counts the records a QueueListener hands it, and discards them."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.target = 0
        self.reached = threading.Event()

    def emit(self, record):
        self.count += 1
        if self.count >= self.target:
            self.reached.set()


@row("log.record", "ops/s")
def log_record(quick):
    """Python's recipe for logging from children: QueueHandler in the child, a multiprocessing
    Queue, a QueueListener in the parent. Records per second from a child logging as fast as it
    can to a handler that counts them, median of 3 rounds (a tenth of zmp's count)."""
    import logging.handlers
    ctx = mp.get_context("fork")
    per_round, warm, rounds = n(quick, 20000), 1000, 3
    q, go = ctx.Queue(), ctx.Semaphore(0)
    counter = _CountingHandler()
    counter.target = warm
    p = ctx.Process(target=_log_producer, args=(q, go, warm, rounds, per_round))
    p.start()  # before the listener's thread exists: fork with threads warns
    listener = logging.handlers.QueueListener(q, counter)
    listener.start()
    counter.reached.wait()
    rates = []
    for _ in range(rounds):
        counter.reached.clear()
        counter.target += per_round
        start = time.perf_counter()
        go.release()
        counter.reached.wait()
        rates.append(per_round / (time.perf_counter() - start))
    p.join()
    listener.stop()
    return statistics.median(rates)


def _manager_dict_us(quick, what):
    """A Manager dict used from the main process (the manager's server is another process):
    one set, one get, or per item of a batch of 1,000 (update + a comprehension of gets, as
    Python has no multi-get)."""
    with mp.Manager() as manager:
        d = manager.dict()
        if what == "batch":
            pairs = {"key%d" % i: i for i in range(1000)}
            keys = list(pairs)

            def once():
                d.update(pairs)
                [d.get(k) for k in keys]
            return 1e6 / 2000 * seconds_per_op(5, n(quick, 4), once)
        d["key"] = 1
        if what == "set":
            counter = [0]

            def once():
                counter[0] += 1
                d["key"] = counter[0]
        else:
            def once():
                d.get("key")
        return 1e6 * seconds_per_op(5, n(quick, 2000), once)


@row("manager.dict.set", "us")
def manager_dict_set(quick):
    return _manager_dict_us(quick, "set")


@row("manager.dict.get", "us")
def manager_dict_get(quick):
    return _manager_dict_us(quick, "get")


@row("manager.dict.batch1000", "us")
def manager_dict_batch(quick):
    return _manager_dict_us(quick, "batch")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "--list":
        for name, (unit, _) in ROWS.items():
            print(name, unit)
        return 0
    name = argv[1]
    if name not in ROWS:
        print("no row named", name, file=sys.stderr)
        return 3
    unit, fn = ROWS[name]
    value = fn("--quick" in argv[2:])
    print(json.dumps({"name": name, "unit": unit, "value": value}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
