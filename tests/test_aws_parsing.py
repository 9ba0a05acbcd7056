"""botocore's XML replies fed to expat in slices (providers/aws_parsing.py): the same result
as botocore's own parser for a reply many slices long, and the same error for a broken one."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.parsers import ResponseParserError, create_parser

from providers import aws_parsing


def describe_instances_reply(count: int) -> bytes:
    items = "".join(
        f"<item><reservationId>r-{n:08x}</reservationId><ownerId>123</ownerId><instancesSet>"
        f"<item><instanceId>i-{n:017x}</instanceId><instanceType>g5.xlarge</instanceType>"
        "<launchTime>2026-01-01T00:00:00.000Z</launchTime>"
        "<instanceState><code>16</code><name>running</name></instanceState>"
        "<tagSet><item><key>Name</key><value>trainer ü</value></item></tagSet>"
        "</item></instancesSet></item>"
        for n in range(count)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>x</requestId><reservationSet>{items}</reservationSet>"
        "</DescribeInstancesResponse>"
    ).encode()


def parse(parser, body: bytes) -> dict:
    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model("DescribeInstances").output_shape
    return parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)


def sliced_parser():
    session = botocore.session.get_session()
    aws_parsing.register(session)
    return session.get_component("response_parser_factory").create_parser("ec2")


def test_a_reply_many_slices_long_parses_as_botocore_parses_it() -> None:
    body = describe_instances_reply(2000)
    assert len(body) > 10 * aws_parsing.XML_SLICE_BYTES
    sliced = parse(sliced_parser(), body)
    plain = parse(create_parser("ec2"), body)
    sliced.pop("ResponseMetadata", None), plain.pop("ResponseMetadata", None)
    assert sliced == plain
    assert len(sliced["Reservations"]) == 2000
    assert sliced["Reservations"][-1]["Instances"][0]["Tags"][0]["Value"] == "trainer ü"


def test_broken_xml_raises_botocores_error() -> None:
    body = describe_instances_reply(3000)[: aws_parsing.XML_SLICE_BYTES * 3 + 17]
    with pytest.raises(ResponseParserError, match="invalid XML"):
        parse(sliced_parser(), body)
