"""What a refusal of the API CROUS means for the run (docs/crous-api.md, "Errors"): stored
and tried again at the next run, stored and blocking until what is to be told changes, or
a sign that the CROUS is down (the run stops)."""

from __future__ import annotations

from ..api import Answer

NON_BLOCKING_422 = {"-8", "-9", "-31", "-41", "-42", "-117"}
CODE_MEANING = {"-8": "dueDate in the past", "-9": "refused (code -9)",
                "-31": "card known but its holder deleted (GDPR)",
                "-41": "refused (code -41)", "-42": "refused (code -42)",
                "-117": "holder anonymised", "-11": "holder already exists"}


class Failure(Exception):  # noqa: N818 (control flow inside a person's steps)
    """A step refused: stored, and whether the person's cards may still go on."""

    def __init__(self, op: str, status: int | None, code: str | None, message: str,
                 blocking: bool, proceed: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.op, self.status, self.code, self.message = op, status, code, message
        self.blocking, self.proceed, self.transient = blocking, proceed, transient


class Abort(Exception):  # noqa: N818
    pass


def judge(op: str, answer: Answer) -> Failure:
    """How a refusal is handled (docs/crous-api.md, "Errors")."""
    status, code = answer.status, answer.code
    message = answer.message
    if status == 423:
        return Failure(op, status, code, f"IZLY account locked: {message}", False, True)
    if status == 406:
        return Failure(op, status, code, f"another institution has priority on this "
                       f"student: {message}", False, True)
    if status == 403:
        what = ("holder held by another institution" if op == "get-holder"
                else "forbidden for this client")
        return Failure(op, status, code, f"{what}: {message}", True)
    if status == 422 and code in NON_BLOCKING_422:
        return Failure(op, status, code, f"{CODE_MEANING[code]}: {message}", False,
                       code == "-31")
    if status == 400:
        return Failure(op, status, code, f"request refused: {message}", True)
    if status >= 500 or status == 429:
        return Failure(op, status, code, f"CROUS error, retried later: {message}", False,
                       transient=True)
    return Failure(op, status, code, f"{message}", False)
