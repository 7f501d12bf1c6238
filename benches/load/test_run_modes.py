"""Unit tests of the harness's run_modes: a mode that fails late must not
lose what the modes before it measured. Run by tests/run.sh: python3 -m
unittest discover -s benches/load -p 'test_*.py'."""
import contextlib, io, os, sys, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_modes  # noqa: E402


def measured(b):
    return ["**Throughput**", f"| capgate-reused | {b} |"]


def fails(_b):
    raise SystemExit("callgrind run of nginx: still running 300 s after it was told to stop")


class RunModes(unittest.TestCase):
    def test_every_mode_gives_a_section_after_the_header(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            sections = run_modes(12345, [("throughput", measured), ("latency", measured)], "Load harness")
        self.assertEqual(sections, ["Load harness", "**Throughput**\n| capgate-reused | 12345 |", "**Throughput**\n| capgate-reused | 12345 |"])
        self.assertEqual(out.getvalue(), "")

    def test_a_failing_mode_prints_the_earlier_sections_and_fails_the_run(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as e:
            run_modes(12345, [("throughput", measured), ("instructions", fails), ("memory", measured)], "Load harness")
        self.assertIn("still running 300 s", str(e.exception))
        printed = out.getvalue()
        self.assertIn("the instructions mode did not finish", printed)
        self.assertIn("| capgate-reused | 12345 |", printed)
        self.assertEqual(printed.count("| capgate-reused | 12345 |"), 1)

    def test_an_interrupted_run_prints_them_too(self):
        def interrupted(_b):
            raise KeyboardInterrupt

        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(KeyboardInterrupt):
            run_modes(7, [("throughput", measured), ("latency", interrupted)], "Load harness")
        self.assertIn("the latency mode did not finish", out.getvalue())
        self.assertIn("| capgate-reused | 7 |", out.getvalue())


if __name__ == "__main__":
    unittest.main()
