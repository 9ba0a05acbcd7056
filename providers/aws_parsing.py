"""botocore's XML replies parsed so that other threads keep running: a big reply is fed to
expat in slices instead of in one call.

botocore hands the whole body to `XMLParser.feed` at once, and expat parses it in one C call
that holds the GIL. One DescribeInstances page of 1,000 instances is ~3.3 MB: measured here,
that call held the GIL for ~150 ms, and the dashboard's main thread (keys, frames) waited for
it. Fed XML_SLICE_BYTES at a time (~3 ms each), the interpreter can switch threads between
slices. Same parser classes, same tree builder, same errors: only the feeding differs.

`register(botocore_session)` installs it for every client made from that session afterwards.
"""

from __future__ import annotations

from typing import Any

XML_SLICE_BYTES = 64 * 1024
_SLICED: dict[type, type] = {}


def register(botocore_session: Any) -> None:
    """Clients created from `botocore_session` from now on parse XML replies in slices."""
    botocore_session.register_component("response_parser_factory", _factory())


def _factory() -> Any:
    from botocore.parsers import ResponseParserFactory

    class SlicedXmlParserFactory(ResponseParserFactory):
        def create_parser(self, protocol_name: str) -> Any:
            parser = super().create_parser(protocol_name)
            sliced = _sliced_class(type(parser))
            return sliced(**self._defaults) if sliced is not type(parser) else parser

    return SlicedXmlParserFactory()


def _sliced_class(parser_class: type) -> type:
    """`parser_class` with its XML fed in slices; JSON parsers (and any botocore whose XML
    parsers no longer have the method) are left as they are."""
    from botocore.parsers import BaseXMLResponseParser

    if not issubclass(parser_class, BaseXMLResponseParser) or not hasattr(
        parser_class, "_parse_xml_string_to_dom"
    ):
        return parser_class
    if parser_class not in _SLICED:
        _SLICED[parser_class] = type(
            f"Sliced{parser_class.__name__}",
            (parser_class,),
            {"_parse_xml_string_to_dom": _parse_xml_in_slices},
        )
    return _SLICED[parser_class]


def _parse_xml_in_slices(self: Any, xml_string: bytes | str) -> Any:
    """botocore's BaseXMLResponseParser._parse_xml_string_to_dom, feeding expat in slices."""
    from botocore.compat import ETree, XMLParseError
    from botocore.parsers import ResponseParserError

    try:
        parser = ETree.XMLParser(target=ETree.TreeBuilder(), encoding=self.DEFAULT_ENCODING)
        for start in range(0, len(xml_string), XML_SLICE_BYTES):
            parser.feed(xml_string[start : start + XML_SLICE_BYTES])
        root = parser.close()
    except XMLParseError as e:
        raise ResponseParserError(
            f"Unable to parse response ({e}), "
            f"invalid XML received. Further retries may succeed:\n{xml_string}"
        ) from e
    return root
