"""Unit tests of the harness's phase_split (the `phases` mode's parser), on
lines in `perf script -F tid,time,event,trace` format. Run by tests/run.sh:
python3 -m unittest discover -s benches/load -p 'test_*.py'."""
import os, sys, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import phase_split  # noqa: E402


def line(tid, t_us, event, args):
    return f"{tid:>6} {t_us / 1e6:.6f}: syscalls:{event}: {args}"


def read(tid, t, fd, ret):
    """A recvfrom on fd entered at t and returning ret at t + 1."""
    r = ret if ret >= 0 else (1 << 64) + ret
    return [line(tid, t, "sys_enter_recvfrom", f"fd: {fd:#010x}, ubuf: 0x7f00, size: 0x00001000, flags: 0x00000000, addr: 0x00000000, addr_len: 0x00000000"),
            line(tid, t + 1, "sys_exit_recvfrom", f"{r:#x}")]


def write(tid, t, fd, call="sys_enter_sendto"):
    return [line(tid, t, call, f"fd: {fd:#010x}, buff: 0x7f00, len: 0x00000080, flags: 0x00004000, addr: 0x00000000, addr_len: 0x00000000")]


class PhaseSplit(unittest.TestCase):
    def test_one_request_is_cut_into_its_three_stretches(self):
        lines = [line(1, 1000, "sys_exit_accept4", "0x7")]
        lines += read(1, 2000, 7, 500)          # the agent's request, read by 2001
        lines += write(1, 2031, 9)              # upstream write: 30 µs of own work
        lines += read(1, 2150, 9, 0xFFFFFFFFFFFFFFF5 - (1 << 64))  # EAGAIN: not a reply
        lines += read(2, 2200, 9, 120)          # the reply, read on another thread by 2201
        lines += write(2, 2215, 7)              # back to the agent: 14 µs
        out = phase_split(lines)
        self.assertEqual([round(x) for x in out["request"]], [30])
        self.assertEqual([round(x) for x in out["upstream"]], [170])
        self.assertEqual([round(x) for x in out["response"]], [14])

    def test_nginx_writes_with_writev_and_only_accepted_sockets_are_agents(self):
        lines = [line(5, 10, "sys_exit_accept4", "0xc"), line(5, 11, "sys_exit_accept4", "0xfffffffffffffff5")]
        lines += read(5, 100, 12, 300)
        lines += write(5, 110, 3, "sys_enter_writev")
        lines += read(5, 200, 3, 90)
        lines += write(5, 206, 12, "sys_enter_writev")
        out = phase_split(lines)
        self.assertEqual([round(x) for x in out["request"]], [9])
        self.assertEqual([round(x) for x in out["upstream"]], [91])
        self.assertEqual([round(x) for x in out["response"]], [5])

    def test_a_closed_agent_descriptor_reused_upstream_is_upstream(self):
        lines = [line(1, 10, "sys_exit_accept4", "0x7"), line(1, 20, "sys_enter_close", "fd: 0x00000007")]
        lines += read(1, 100, 7, 80)            # fd 7 is now an upstream socket: a reply, not a request
        lines += write(1, 105, 8)               # and fd 8 is not an agent: no stretch ends here
        out = phase_split(lines)
        self.assertEqual({k: v for k, v in out.items() if k in ("request", "upstream", "response")}, {"request": [], "upstream": [], "response": []})

    def test_a_stretch_interleaved_with_another_request_on_the_thread_is_left_out(self):
        lines = [line(1, 0, "sys_exit_accept4", "0x7"), line(1, 0, "sys_exit_accept4", "0x8")]
        lines += read(1, 100, 7, 400)           # request A read
        lines += read(1, 110, 20, 60)           # an upstream reply for B read before A is forwarded
        lines += write(1, 130, 21)              # A's upstream write: the thread's last read was a reply
        lines += write(1, 140, 8)               # B's reply written: 29 µs after its read
        out = phase_split(lines)
        self.assertEqual(out["request"], [])
        self.assertEqual([round(x) for x in out["response"]], [29])

    def test_dispatch_delay_runs_from_epoll_wait_to_the_first_read_with_bytes(self):
        lines = [line(1, 0, "sys_exit_accept4", "0x7")]
        lines += [line(1, 100, "sys_exit_epoll_wait", "0x1")]
        lines += read(1, 102, 9, -11)           # EAGAIN on another socket: still waiting
        lines += read(1, 106, 7, 400)           # the request: read by 107, 7 µs after the wake
        lines += write(1, 120, 9)
        lines += [line(2, 200, "sys_exit_epoll_wait", "0x0")]  # a timeout: no events, no wake
        lines += [line(1, 300, "sys_exit_epoll_wait", "0x2")]
        lines += read(1, 303, 9, 90)            # the reply: read by 304, 4 µs after the wake
        lines += read(1, 310, 7, -11)
        out = phase_split(lines)
        self.assertEqual([round(x) for x in out["wake_agent"]], [7])
        self.assertEqual([round(x) for x in out["wake_upstream"]], [4])
        self.assertEqual([round(x) for x in out["upstream"]], [184])

    def test_a_wake_without_a_read_before_the_next_timeout_is_not_timed(self):
        lines = [line(1, 0, "sys_exit_accept4", "0x7")]
        lines += [line(1, 100, "sys_exit_epoll_wait", "0x1")]  # woken, but only to write
        lines += write(1, 101, 9)
        lines += [line(1, 5000, "sys_exit_epoll_wait", "0x0")]  # then a timeout
        lines += read(1, 5001, 7, 300)
        self.assertEqual(phase_split(lines)["wake_agent"], [])


if __name__ == "__main__":
    unittest.main()
