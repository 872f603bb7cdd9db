import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.room_versions import (
    DEFAULT_ROOM_VERSION,
    KNOWN_ROOM_VERSIONS,
    V1,
    V10,
    V11,
    V12,
    get_room_version,
)


def test_known_versions():
    assert list(KNOWN_ROOM_VERSIONS) == [str(n) for n in range(1, 13)]
    assert all(v.stable for v in KNOWN_ROOM_VERSIONS.values())
    assert get_room_version("1") is V1
    assert DEFAULT_ROOM_VERSION is V12
    assert get_room_version("10") is V10
    assert get_room_version(V11) is V11
    assert DEFAULT_ROOM_VERSION in KNOWN_ROOM_VERSIONS.values()


def test_flags():
    assert V10.creator_in_content and not V11.creator_in_content
    assert V11.redacts_in_content and not V10.redacts_in_content
    assert V11.v11_redaction and not V10.v11_redaction
    assert all(v.knock_join_rule and v.restricted_join_rule and v.stable for v in (V10, V11))


@pytest.mark.parametrize("identifier", ["0", "13", "1.0", "", None, 10])
def test_unknown_versions_refused(identifier):
    with pytest.raises(MatrixError) as e:
        get_room_version(identifier)
    assert (e.value.status, e.value.errcode) == (400, "M_UNSUPPORTED_ROOM_VERSION")
