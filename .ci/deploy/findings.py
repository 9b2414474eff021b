"""What a deploy check found: each failure kept in `errors` and printed
(`err`), each pass printed (`ok`); the check exits non-zero when `errors`
is not empty."""

errors = []


def err(msg):
    errors.append(msg)
    print(f"  FAIL: {msg}")


def ok(msg):
    print(f"  ok: {msg}")
