"""
course/record.py: writes course/recorded.json, the values of rloo and turn_credits that exercise 4's public
tests look up (stand_ins.Recorded), so that rl_update is graded alone while the student's copy holds no code that
computes rloo or turn_credits. Instructor only (never copied): rerun it after changing exercise 4's tests or
score.py's rloo, turn_credits or rl_update; a stale file fails the solution's own run of the tests in CI.

  python course/record.py
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import pytest  # noqa: E402

import score  # noqa: E402
from stand_ins import Recorded  # noqa: E402


def main():
    Recorded.source = {"rloo": score.rloo, "turn_credits": score.turn_credits}  # the solution's, computed
    code = pytest.main(["-q", "-p", "no:cacheprovider", str(HERE / "test_exercises.py"), "-k", "ex4"])
    if code != 0:
        raise SystemExit(f"course/record.py: exercise 4's tests fail with the solution (exit {code}); nothing written")
    rows = [[list(tag), x, y] for tag, entries in Recorded.table.items() for x, y in entries]
    Recorded.FILE.write_text(json.dumps(rows, separators=(",", ":")) + "\n")
    print(f"course/record.py: {len(rows)} recorded calls -> {Recorded.FILE}")


if __name__ == "__main__":
    main()
