"""Unit tests of the harness's stop_callgrind_target, against real child
processes on 127.0.0.1. One stands for nginx caught by a signal between its
loop's check and its next wait: it notes SIGQUIT and exits only once a
connection wakes its blocking `accept` (Python retries the call after the
handler, as nginx's `epoll_wait` waits on). Run by tests/run.sh: python3 -m
unittest discover -s benches/load -p 'test_*.py'."""
import os, subprocess, sys, time, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import stop_callgrind_target  # noqa: E402

# Notes SIGQUIT, ignores SIGTERM, and leaves only after a connection
# arrives once a SIGQUIT has been noted.
STUCK_UNTIL_WOKEN = """
import signal, socket, sys
quit = False
def noted(*_):
    global quit
    quit = True
signal.signal(signal.SIGQUIT, noted)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
    if quit:
        sys.exit(0)
"""


def child():
    p = subprocess.Popen([sys.executable, "-c", STUCK_UNTIL_WOKEN], stdout=subprocess.PIPE, text=True, start_new_session=True)
    port = int(p.stdout.readline())
    return p, port


class StopCallgrindTarget(unittest.TestCase):
    def test_nginx_stuck_after_its_signal_is_woken_by_a_connection(self):
        p, port = child()
        try:
            t = time.monotonic()
            stop_callgrind_target(p, "nginx", port, timeout=30)
            self.assertEqual(p.returncode, 0)
            # Not the signal alone: it took the connection, made after 5 s.
            self.assertGreaterEqual(time.monotonic() - t, 4.5)
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()

    def test_a_target_that_does_not_stop_fails_the_run(self):
        p, port = child()
        try:
            # capgate's SIGTERM is ignored here: the run fails with a message
            # instead of reading a callgrind output that is not written yet.
            with self.assertRaises(SystemExit) as e:
                stop_callgrind_target(p, "capgate-reused", port, timeout=1)
            self.assertIn("still running 1 s after it was told to stop", str(e.exception))
            self.assertIsNone(p.poll())
        finally:
            p.kill()
            p.wait()
            p.stdout.close()


if __name__ == "__main__":
    unittest.main()
