"""Unit tests of the harness's callgrind_allocator_calls and
callgrind_inclusive (the `instructions` mode's allocation count and its
Ed25519 column), on call records in callgrind's output format. Run
by tests/run.sh: python3 -m unittest discover -s benches/load -p 'test_*.py'."""
import os, sys, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ED25519, callgrind_allocator_calls, callgrind_inclusive  # noqa: E402

# Two callers and their calls, with callgrind's name compression: a name is
# spelled out at its first use as `(id) name`, then written as `(id)` alone.
RECORDS = """\
version: 1
events: Ir
fl=(1) src/app.rs
fn=(1) app::handle
cfn=(2) mi_malloc_aligned
calls=3 0x1000
12 90
cfn=(3) mi_free
calls=2 0x1100
13 40
cfn=(4) app::parse
calls=7 0x1200
14 700
fn=(4)
cfn=(2)
calls=5 0x1000
20 150
cfn=(5) free@GLIBC_2.2.5
calls=4 0x1300
21 80
cfn=(9) mi_realloc_aligned
calls=2 0x1500
22 30
"""

# Inside the allocator: mimalloc's realloc freeing the old block, glibc's
# realloc internals calling malloc.
INTERNAL = """\
fn=(6) mi_realloc_aligned
cfn=(3) mi_free
calls=9 0x1100
30 90
fn=(7) _int_realloc
cfn=(8) malloc
calls=6 0x1400
40 60
"""


class AllocatorCalls(unittest.TestCase):
    def test_counts_the_programs_calls_by_their_compressed_names(self):
        # handle: 3 allocations, 2 frees; parse (named by id only): 5
        # allocations, 4 frees (the glibc symbol version cut off) and 2
        # reallocations. Calls between other functions (handle -> parse) are
        # not the allocator's.
        self.assertEqual(callgrind_allocator_calls(RECORDS.splitlines()), (8, 2, 6))

    def test_calls_made_inside_the_allocator_are_not_the_programs(self):
        self.assertEqual(callgrind_allocator_calls((RECORDS + INTERNAL).splitlines()), (8, 2, 6))
        self.assertEqual(callgrind_allocator_calls(INTERNAL.splitlines()), (0, 0, 0))


# The proxy calls the signature check twice (700 instructions in all) and a
# hash once; the check calls into curve arithmetic (already inside the 700),
# named later by id only; a token parser calls the check once more with a
# relative position (`+2`).
SIGNATURES = """\
fn=(1) capgate::proxy::admit
cfn=(2) <ed25519_dalek::verifying::VerifyingKey as signature::Verifier>::verify
calls=2 0x2000
50 700
cfn=(3) sha2::sha256::compress256
calls=1 0x2100
51 300
fn=(2)
cfn=(4) <&curve25519_dalek::field::FieldElement as core::ops::Mul>::mul
calls=40 0x2200
60 500
fn=(5) capgate::token::parse
cfn=(4)
calls=1 0x2200
+2 25
"""


class Inclusive(unittest.TestCase):
    def test_sums_calls_into_the_matching_functions_from_outside_them(self):
        # 700 from admit, 25 from parse; the check's own call into curve
        # arithmetic is inside the 700 and not counted again; the hash
        # does not match.
        self.assertEqual(callgrind_inclusive(SIGNATURES.splitlines(), ED25519), 725)

    def test_nothing_matching_counts_nothing(self):
        self.assertEqual(callgrind_inclusive(RECORDS.splitlines(), ED25519), 0)

    def test_the_allocator_count_is_unchanged_by_the_cost_lines(self):
        self.assertEqual(callgrind_allocator_calls((SIGNATURES + RECORDS).splitlines()), (8, 2, 6))


if __name__ == "__main__":
    unittest.main()
