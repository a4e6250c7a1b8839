"""Tests for services/mcp_tools/catalog.py: a tool server's list checked and bounded, the names the model sees
(valid, unique, stable), and the arguments a model streams parsed into a dict or refused with a sentence."""

from __future__ import annotations

import re
import time

import pytest
from mcp.types import Tool

from services.mcp_tools.catalog import (
    MAX_ARGUMENT_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_TOOLS,
    MAX_TOOLS_PER_SERVER,
    ArgumentsError,
    ListedTool,
    ToolSpec,
    build_catalog,
    check_tools,
    exposed_name,
    parse_arguments,
)
from services.redact import Scrubber

pytestmark = pytest.mark.unit

OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SCRUBBER = Scrubber(["owner-key-123456"])


def tool(name: str = "lookup", schema: object = None, description: str | None = "Weather in a city.") -> Tool:
    return Tool.model_construct(name=name, description=description, inputSchema=SCHEMA if schema is None else schema)


def spec(required: tuple[str, ...] = ("city",)) -> ToolSpec:
    return ToolSpec("s__lookup", "s", "lookup", "", SCHEMA, required)


class TestNames:
    @pytest.mark.parametrize(
        ("server", "name", "expected"),
        [
            ("search", "web_search", "search__web_search"),
            ("calc", "add-2", "calc__add-2"),
            ("fs", "files.read", "fs__files_read"),  # a dot is not allowed: replaced
            ("fs", "lire fichier é", "fs__lire_fichier__"),  # spaces and non-ASCII letters too
        ],
    )
    def test_server_prefix_and_valid_characters(self, server, name, expected):
        """The model sees `<server>__<tool>`, every refused character made `_`."""
        assert exposed_name(server, tool=name) == expected

    def test_long_names_are_cut_and_stay_apart(self):
        """Past 64 characters a name is cut and ends with a hash of the whole: two long names sharing their
        start stay distinct, and each is valid."""
        first = exposed_name("server", tool="x" * 100 + "a")
        second = exposed_name("server", tool="x" * 100 + "b")
        assert first != second
        assert all(OPENAI_NAME.match(name) for name in (first, second))
        assert len(first) == 64

    def test_same_tool_on_two_servers(self):
        """Two servers offering `add` give two tools, each leading back to its own server."""
        listed = [ListedTool("add", "Add.", SCHEMA)]
        catalog, problems = build_catalog([("a", listed), ("b", listed)])
        assert list(catalog) == ["a__add", "b__add"]
        assert [(s.server, s.tool) for s in catalog.values()] == [("a", "add"), ("b", "add")]
        assert problems == []

    def test_names_that_collide_once_made_valid_are_numbered(self):
        """`a.b` and `a_b` of one server (both `s__a_b` once made valid), and a server whose name holds `__`,
        still give distinct names, the later ones numbered."""
        catalog, _ = build_catalog(
            [
                ("s", [ListedTool("a.b", "", SCHEMA), ListedTool("a_b", "", SCHEMA)]),
                ("s__a", [ListedTool("b", "", SCHEMA)]),
            ]
        )
        assert list(catalog) == ["s__a_b", "s__a_b_2", "s__a__b"]
        assert [s.tool for s in catalog.values()] == ["a.b", "a_b", "b"]

    def test_at_most_128_tools_in_all(self):
        """OpenAI takes at most 128 tools a request: the rest are left out, each with a line."""
        many = [ListedTool(f"t{i}", "", SCHEMA) for i in range(MAX_TOOLS_PER_SERVER)]
        catalog, problems = build_catalog([("a", many), ("b", many), ("c", many[:3])])
        assert len(catalog) == MAX_TOOLS
        assert len(problems) == 3
        assert "at most 128 tools in all" in problems[0]

    def test_openai_shape(self):
        """The shape of `tools=[...]` in a chat request."""
        assert spec().openai() == {
            "type": "function",
            "function": {"name": "s__lookup", "description": "", "parameters": SCHEMA},
        }


class TestCheckTools:
    def test_a_good_tool_is_kept(self):
        """Name, description and a private copy of the schema, with its required keys."""
        kept, problems = check_tools([tool()], scrubber=SCRUBBER)
        assert problems == []
        assert kept == [ListedTool("lookup", "Weather in a city.", SCHEMA, ("city",))]
        assert kept[0].parameters is not SCHEMA

    def test_properties_are_added_when_missing(self):
        """`{"type": "object"}` alone is a tool without arguments; some providers want `properties` anyway."""
        kept, _ = check_tools([tool(schema={"type": "object"})], scrubber=SCRUBBER)
        assert kept[0].parameters == {"type": "object", "properties": {}}

    BAD_SCHEMAS = (
        ({"type": "array"}, "not a JSON object schema"),  # a list, not named arguments
        ({"properties": {}}, "not a JSON object schema"),  # no type
        ({"type": "object", "properties": []}, "properties of its input schema are not an object"),
        ({"type": "object", "required": "city"}, "required keys of its input schema are not a list"),
        ({"type": "object", "required": [1, 2]}, "required keys of its input schema are not a list"),
        ({"type": "object", "required": ["k"] * 101}, "required keys of its input schema are not a list"),
        ({"type": "object", "description": "x" * 20_000}, "its input schema is 20,"),  # too large
    )

    @pytest.mark.parametrize(("schema", "reason"), BAD_SCHEMAS)
    def test_a_bad_schema_leaves_the_tool_out(self, schema, reason):
        """A tool whose schema the model could not use is left out, with a line that says why."""
        kept, problems = check_tools([tool(schema=schema)], scrubber=SCRUBBER)
        assert kept == []
        assert len(problems) == 1
        assert problems[0].startswith("tool 'lookup' left out: ")
        assert reason in problems[0]

    def test_names_repeated_empty_or_too_long(self):
        """A name listed twice keeps its first; an empty or over-long one is left out."""
        tools = [tool("a"), tool("a", description="again"), tool(""), tool("x" * 257)]
        kept, problems = check_tools(tools, scrubber=SCRUBBER)
        assert [t.tool for t in kept] == ["a"]
        assert kept[0].description == "Weather in a city."
        assert len(problems) == 3

    def test_one_server_offers_at_most_64(self):
        """A server cannot crowd the others out."""
        kept, problems = check_tools([tool(f"t{i}") for i in range(70)], scrubber=SCRUBBER)
        assert len(kept) == MAX_TOOLS_PER_SERVER
        assert len(problems) == 6

    def test_description_bounded_and_masked(self):
        """A description is cut to its bound, and a secret of the Space in it is masked, even at the cut."""
        cut_inside_key = "d" * (MAX_DESCRIPTION_CHARS - 5) + "owner-key-123456"
        texts = ["Uses owner-key-123456 for you.", "x" * 50_000, cut_inside_key, None]
        kept, _ = check_tools([tool(f"t{i}", description=d) for i, d in enumerate(texts)], scrubber=SCRUBBER)
        assert kept[0].description == "Uses *** for you."
        assert len(kept[1].description) == MAX_DESCRIPTION_CHARS + 1
        assert kept[1].description.endswith("…")
        assert "owner" not in kept[2].description
        assert kept[3].description == ""

    def test_hostile_list_at_a_megabyte(self):
        """A megabyte of name, description or schema costs milliseconds, not seconds."""
        deep: dict[str, object] = {"type": "object"}
        node = deep
        for _ in range(150):
            node["properties"] = {"x": {"type": "object"}}
            node = node["properties"]["x"]  # type: ignore[index,assignment]
        tools = [
            tool("n" * 1_000_000),
            tool("d", description="owner-key-1 " * 90_000),
            tool("s", schema={"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(60_000)}}),
            tool("deep", schema=deep),
        ]
        started = time.perf_counter()
        kept, problems = check_tools(tools, scrubber=SCRUBBER)
        # Seconds, where a quadratic walk would take minutes: a loaded CI runner is slow.
        assert time.perf_counter() - started < 2.0
        assert [t.tool for t in kept] == ["d", "deep"]
        assert len(problems) == 2


class TestArguments:
    @pytest.mark.parametrize(
        ("arguments", "expected"),
        [
            ('{"city": "Oslo"}', {"city": "Oslo"}),
            ({"city": "Oslo"}, {"city": "Oslo"}),
            ('  {"city": "Oslo", "extra": [1, 2]}  ', {"city": "Oslo", "extra": [1, 2]}),
        ],
    )
    def test_an_object_is_taken(self, arguments, expected):
        """JSON text of an object, or a mapping, gives a dict."""
        assert parse_arguments(arguments, spec=spec()) == expected

    @pytest.mark.parametrize("arguments", [None, "", "  "])
    def test_nothing_means_no_arguments(self, arguments):
        """A model calling a tool without arguments may send nothing, or an empty text."""
        assert parse_arguments(arguments, spec=spec(required=())) == {}

    BAD = (
        (
            '{"city": "Os',  # cut short, as a stream stopped early leaves it
            "The arguments are not valid JSON: Unterminated string starting at (character 9). Send one JSON object.",
        ),
        ("[1, 2]", "The arguments must be a JSON object of named arguments, not a list."),
        ('"Oslo"', "The arguments must be a JSON object of named arguments, not a string."),
        ("3", "The arguments must be a JSON object of named arguments, not a number."),
        ("{}", "Missing required argument(s): city."),
        ('{"town": "Oslo"}', "Missing required argument(s): city."),
        ("[" * 50_000, "The arguments are not valid JSON. Send one JSON object."),  # deeper than the parser goes
        ("x" * (MAX_ARGUMENT_CHARS + 1), "The arguments are 100,001 characters; at most 100,000."),
    )

    @pytest.mark.parametrize(("arguments", "message"), BAD)
    def test_broken_arguments_are_refused_with_a_sentence(self, arguments, message):
        """What a model can send wrong, streamed JSON cut short included, is refused in words it can act on."""
        with pytest.raises(ArgumentsError) as info:
            parse_arguments(arguments, spec=spec())
        assert str(info.value) == message

    def test_a_megabyte_of_arguments(self):
        """A megabyte of arguments is refused before it is parsed."""
        started = time.perf_counter()
        for arguments in ('{"city": "' + "x" * 1_000_000 + '"}', "[" * 1_000_000):
            with pytest.raises(ArgumentsError):
                parse_arguments(arguments, spec=spec())
        assert time.perf_counter() - started < 0.05
