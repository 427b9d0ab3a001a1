"""Grading setup: the project root is importable, and the summary names what passed: the public tests only."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pytest_terminal_summary(terminalreporter, exitstatus):
    passed = len(terminalreporter.stats.get("passed", []))
    failed = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    if passed and not failed:
        terminalreporter.write_line(f"public tests passed ({passed}); the instructor's check (course/check.py) runs "
                                    "others on fresh seeds and shapes")
    elif failed:
        terminalreporter.write_line(f"public tests: {failed} failed, {passed} passed")
