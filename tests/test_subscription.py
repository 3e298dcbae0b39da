"""parse_subscription: the fast path for plain query strings agrees with full unquoting."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longpoll.errors import InvalidRequest
from longpoll.subscription import Subscription, parse_subscription

# Characters that need no unquoting, so a query made of them takes the fast path.
_PLAIN = st.text(alphabet="abcxyz019-_.~/:é", max_size=6)
_KEYS = st.sampled_from(["category", "timeout", "since_time", "last_id", "other", ""])
_VALUES = st.one_of(
    _PLAIN,
    st.sampled_from(["5", "0", "-1", "1700000000000", "2b6c6a7e-5d0b-4c1b-9c1e-1f1f1f1f1f1f"]),
)


def _parse(query: str) -> Subscription | str:
    try:
        return parse_subscription(query.encode("utf-8"), 110, 4)
    except InvalidRequest as exc:
        return f"error: {exc}"


@given(st.lists(st.tuples(_KEYS, _VALUES, st.booleans()), max_size=6))
def test_plain_and_percent_encoded_queries_parse_alike(fields: list[tuple[str, str, bool]]) -> None:
    plain = "&".join(f"{key}={value}" if has_eq else key for key, value, has_eq in fields)
    encoded = "&".join(
        f"{key}={quote(value, safe='')}" if has_eq else key for key, value, has_eq in fields
    )
    # Always take the unquoting path for the second one.
    assert _parse(plain) == _parse(encoded + "&x=%20")


def test_plain_query_values() -> None:
    subscription = parse_subscription(
        b"category=a&timeout=7&category=b&since_time=12&last_id=", 110, 4
    )
    assert subscription == Subscription(("a", "b"), 7, 12, None)


def test_raw_and_percent_encoded_utf8_categories_agree() -> None:
    raw = parse_subscription("category=é&timeout=5".encode(), 110, 4)
    encoded = parse_subscription(b"category=%C3%A9&timeout=5", 110, 4)
    assert raw == encoded == Subscription(("é",), 5)


def test_a_bare_string_of_categories_is_refused_not_split_into_letters() -> None:
    subscription = Subscription("news", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as refused:
        subscription.check(max_timeout_seconds=110, max_categories=16)
    assert str(refused.value) == (
        "categories must be a tuple of names, not the string 'news': "
        "write ('news',) for one category"
    )
    Subscription(("news",), 1).check(max_timeout_seconds=110, max_categories=16)
