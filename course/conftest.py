"""Grading setup: the project root is importable, exercise 4's fixture `alone`, and a summary that names what
passed: the public tests only."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture
def alone(monkeypatch):
    """exercise 4 graded alone: rloo and turn_credits are recorded values; grads collects the unclipped gradient"""
    import score
    from stand_ins import Recorded
    rec = Recorded.load()
    monkeypatch.setattr(score, "rloo", rec.rloo)
    monkeypatch.setattr(score, "turn_credits", rec.turn_credits)
    grads = []  # the gradient before clipping, seen through clip_grad_norm_
    real = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm):
        params = list(params)
        grads.append([q.grad.clone() for q in params])
        return real(params, float("inf"))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    return SimpleNamespace(grads=grads, rec=rec)


def pytest_terminal_summary(terminalreporter, exitstatus):
    passed = len(terminalreporter.stats.get("passed", []))
    failed = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    if passed and not failed:
        terminalreporter.write_line(f"public tests passed ({passed}); the instructor's check (course/check.py) runs "
                                    "others on fresh seeds and shapes")
    elif failed:
        terminalreporter.write_line(f"public tests: {failed} failed, {passed} passed")
