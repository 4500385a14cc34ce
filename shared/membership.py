"""Static consumer-group membership: a replica's stable name in its groups, and leaving a group under that name.

With `CEPER_INSTANCE_ID` set, a consumer joins as a static member (`group.instance.id`). A process that
restarts under the same name, even after being killed, takes its partitions back at once: the coordinator
replaces the old member instead of waiting out its session. A static member does not leave its group when
it stops (aiokafka sends no LeaveGroup for it), so its partitions would sit idle for the session timeout;
`leave_group` asks the coordinator to remove it by name, as Kafka's admin tools do (LeaveGroup v3, KIP-345),
so the other replicas take over at once on a clean stop too.
"""

from __future__ import annotations

from typing import Any

from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from .logging import get_logger

log = get_logger(__name__)


class _LeaveGroupResponseV3(Response):  # type: ignore[misc]  # aiokafka's protocol classes are untyped
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16))),
    )


class _LeaveGroupRequestV3(RequestStruct):  # type: ignore[misc]  # as above
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class _LeaveGroupByName(Request[_LeaveGroupRequestV3]):  # type: ignore[misc]  # as above
    API_KEY = 13

    def __init__(self, group_id: str, instance_id: str) -> None:
        self.group_id = group_id
        self.instance_id = instance_id

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        # An empty member id: the coordinator finds the member by its instance name.
        return request_struct_class(self.group_id, [("", self.instance_id)])


async def leave_group(bootstrap_servers: str, group_id: str, instance_id: str, *, timeout_ms: int = 5000) -> bool:
    """Removes the static member `instance_id` from `group_id`; True if the coordinator did."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, client_id=f"{instance_id}-leave", request_timeout_ms=timeout_ms)
    try:
        await client.bootstrap()
        coordinator = await client.coordinator_lookup(CoordinationType.GROUP, group_id)
        response: Any = await client.send(coordinator, _LeaveGroupByName(group_id, instance_id))
    except Exception as exc:  # the session timeout removes the member anyway: leaving is a courtesy
        log.info("could not leave the consumer group; its session will expire", group=group_id, error=repr(exc))
        return False
    finally:
        await client.close()
    errors = [response.error_code, *(member[2] for member in response.members)]
    if any(errors):
        log.info("the coordinator did not remove the member; its session will expire", group=group_id, errors=errors)
        return False
    return True
