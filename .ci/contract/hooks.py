"""Generation rules for the contract fuzzing run that the OpenAPI description states only in
words, because a schema cannot say them. Each rule touches positive cases only: those claim to
be requests the server must accept, so a positive case that breaks a stated rule is not one.
Negative cases are left as generated, and no check is changed.

- A header value must match its parameter's schema. The coverage phase draws header values
  from letters and digits only, so for a pattern that needs punctuation (`If-Match` is
  `"7"`, quotes included) it emits values that break the pattern yet labels them positive.
  Such an optional header is left out of the case (which stays a valid request, so the rest of
  it, the body's boundary values say, is still tried); a required one drops the case.
- `history`: `as_of` and `at_version` are exclusive, and `from` must be before `to`.
- A reserve names either a `location` or an `allocation`, not both: a positive case with both
  keeps the allocation.
- A positive dispatch's transfer id, its implicit idempotency key, is made unique like a
  reservation id.
- An idempotency key names one request of its principal (the same key with another request is
  refused, 422): each positive request gets a key of its own, and so does a reserve's
  reservation id, which is its implicit key.
"""

import uuid
from datetime import datetime

import jsonschema_rs
import schemathesis

_VALIDATORS = {}


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _validator(schema):
    key = repr(schema)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = jsonschema_rs.validator_for(schema)
    return _VALIDATORS[key]


def _misfit_headers(case):
    """The declared headers whose value breaks the parameter's schema, with whether each is
    required."""
    headers = case.headers or {}
    misfits = []
    for parameter in case.operation.headers:
        name = parameter.name
        schema = parameter.definition.get("schema")
        if name in headers and schema is not None:
            if not _validator(schema).is_valid(headers[name]):
                misfits.append((name, parameter.definition.get("required", False)))
    return misfits


def _moment(value):
    try:
        return datetime.fromisoformat(str(value).replace("z", "Z"))
    except ValueError:
        return None


def _history_rules_hold(case):
    query = case.query or {}
    if "as_of" in query and "at_version" in query:
        return False
    if "from" in query and "to" in query:
        start, end = _moment(query["from"]), _moment(query["to"])
        if start is not None and end is not None and start >= end:
            return False
    return True


@schemathesis.hook
def filter_case(context, case):
    if not _is_positive(case):
        return True
    required_misfit = any(required for _, required in _misfit_headers(case))
    return not required_misfit and _history_rules_hold(case)


@schemathesis.hook
def map_case(context, case):
    if not _is_positive(case):
        return case
    for name, _ in _misfit_headers(case):
        del case.headers[name]
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    body = case.body
    if (
        case.method.upper() == "POST"
        and case.path.endswith("/reservations")
        and isinstance(body, dict)
        and isinstance(body.get("reservation_id"), str)
    ):
        body["reservation_id"] = str(uuid.uuid4())
    if (
        case.method.upper() == "POST"
        and case.path.endswith("/reservations")
        and isinstance(body, dict)
        and "location" in body
        and "allocation" in body
    ):
        del body["location"]
    if (
        case.method.upper() == "POST"
        and case.path.endswith("/transfers")
        and isinstance(body, dict)
        and isinstance(body.get("transfer_id"), str)
    ):
        body["transfer_id"] = str(uuid.uuid4())
    return case
