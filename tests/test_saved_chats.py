"""Tests for services/saved_chats.py: records sealed for the browser and checked on return, the storage budgets, and
export and import."""

from __future__ import annotations

import json

import pytest

from services.conversation import Limits, Turn
from services.errors import ConversationError, StoredConversationError
from services.saved_chats import (
    EXPORT_FORMAT,
    ChatArchive,
    Conversation,
    Meta,
    OpenChat,
    SavedChats,
    Seal,
    export_json,
    export_markdown,
    import_json,
    new_conversation_id,
    plan_save,
    title_for,
)

pytestmark = pytest.mark.unit

LIMITS = Limits(max_messages=20, max_chars=10_000)
SEAL = Seal("history-secret-for-tests", limits=LIMITS)
TURNS = (
    Turn("user", "What is 2 + 2?"),
    Turn("assistant", "4.", thinking="Add them.\n\nEasy.", thinking_seconds=1.5),
    Turn("user", "Thanks"),
    Turn("assistant", "You're welcome", notice="The reply was cut at the token limit."),
)
META = Meta("abc123", "What is 2 + 2?", 1_700_000_000.0, 1_700_000_100.5, sum(turn.size for turn in TURNS))
CONVERSATION = Conversation(META, TURNS)
NOT_PASSED = "A saved conversation did not pass its check (altered, or saved under another HISTORY_SECRET)."


def record_with(**changes: object) -> str:
    """The sealed record of CONVERSATION with some of its top-level fields replaced."""
    record = json.loads(SEAL.seal(CONVERSATION))
    record.update(changes)
    return json.dumps(record)


class TestIds:
    def test_new_ids_are_32_hex_characters(self):
        """An id is 32 lowercase hex characters, and two are never the same."""
        first, second = new_conversation_id(), new_conversation_id()
        assert len(first) == 32
        assert set(first) <= set("0123456789abcdef")
        assert first != second


class TestTitle:
    CASES = (
        ((Turn("user", "Hello there"),), "Hello there"),  # the first message
        ((Turn("user", "  line one\n\n line  two "),), "line one line two"),  # white space collapsed
        ((Turn("assistant", "Hi!"), Turn("user", " "), Turn("user", "Real")), "Real"),  # the first user text
        ((), "New chat"),  # nothing yet
        ((Turn("assistant", "Only me"),), "New chat"),  # no user message
        ((Turn("user", "x" * 60),), "x" * 60),  # exactly the limit
        ((Turn("user", "x" * 61),), "x" * 59 + "…"),  # one over: shortened
        ((Turn("user", "word " * 20),), "word " * 11 + "word…"),  # no space before the ellipsis
    )

    @pytest.mark.parametrize(("turns", "expected"), CASES)
    def test_title(self, turns, expected):
        """A title is the first user message, on one line, at most 60 characters."""
        assert title_for(turns) == expected


class TestSeal:
    def test_round_trip(self):
        """A sealed record opens back to the same conversation."""
        assert SEAL.open("abc123", SEAL.seal(CONVERSATION)) == CONVERSATION

    def test_the_id_is_the_storage_key(self):
        """The same record opens under another key (a tab's copy), with that key as its id."""
        opened = SEAL.open("copy99", SEAL.seal(CONVERSATION))
        assert opened.meta.id == "copy99"
        assert opened.turns == TURNS

    def test_the_same_secret_opens_it_after_a_restart(self):
        """A new seal with the same HISTORY_SECRET opens what the last one sealed."""
        assert Seal("history-secret-for-tests", limits=LIMITS).open("abc123", SEAL.seal(CONVERSATION)) == (CONVERSATION)

    def test_a_different_secret_is_refused(self):
        """A record sealed under another HISTORY_SECRET does not pass."""
        other = Seal("another-secret", limits=LIMITS)
        with pytest.raises(StoredConversationError) as info:
            other.open("abc123", SEAL.seal(CONVERSATION))
        assert str(info.value) == NOT_PASSED

    def test_tampered_turns_are_refused(self):
        """Changing a single message's text breaks the record's signature."""
        record = json.loads(SEAL.seal(CONVERSATION))
        record["turns"][1]["text"] = "5."
        with pytest.raises(StoredConversationError, match=r"did not pass its check"):
            SEAL.open("abc123", json.dumps(record))

    def test_added_turn_is_refused(self):
        """Appending a message breaks the signature too."""
        record = json.loads(SEAL.seal(CONVERSATION))
        record["turns"].append({"role": "user", "text": "injected"})
        with pytest.raises(StoredConversationError, match=r"did not pass its check"):
            SEAL.open("abc123", json.dumps(record))

    def test_tampered_meta_is_refused(self):
        """Changing the title, even with the record signature left alone, does not pass."""
        record = json.loads(SEAL.seal(CONVERSATION))
        record["meta"]["title"] = "Something else"
        with pytest.raises(StoredConversationError, match=r"did not pass its check"):
            SEAL.open("abc123", json.dumps(record))

    @pytest.mark.parametrize("field", ["sig", "meta_sig"])
    def test_tampered_signature_is_refused(self, field):
        """A signature changed in one character, or of the wrong type, does not pass."""
        record = json.loads(SEAL.seal(CONVERSATION))
        signature = record[field]
        record[field] = ("0" if signature[0] != "0" else "1") + signature[1:]
        with pytest.raises(StoredConversationError, match=r"did not pass its check"):
            SEAL.open("abc123", json.dumps(record))
        with pytest.raises(StoredConversationError, match=r"did not pass its check"):
            SEAL.open("abc123", record_with(**{field: None}))

    def test_swapped_meta_of_another_conversation_is_refused(self):
        """A summary and its signature taken from another record do not pass with this record's turns."""
        other = json.loads(SEAL.seal(Conversation(Meta("x", "Other", 1.0, 2.0, 5), (Turn("user", "other"),))))
        with pytest.raises(StoredConversationError, match=r"did not pass its check"):
            SEAL.open("abc123", record_with(meta=other["meta"], meta_sig=other["meta_sig"]))

    IDS = (
        "",  # empty
        "a" * 65,  # too long
        "../etc",  # a path
        "ab-cd",  # a dash
        "ab cd",  # a space
        42,  # not text
        None,  # nothing
    )

    @pytest.mark.parametrize("key", IDS)
    def test_malformed_ids_are_refused(self, key):
        """A storage key that is not 1 to 64 letters and digits is refused before anything is read."""
        with pytest.raises(StoredConversationError) as info:
            SEAL.open(key, SEAL.seal(CONVERSATION))
        assert str(info.value) == "A saved conversation has a malformed id."

    def test_longest_id_is_accepted(self):
        """64 letters and digits is a valid key."""
        assert SEAL.open("a" * 64, SEAL.seal(CONVERSATION)).meta.id == "a" * 64

    RECORDS = (
        (None, "A saved conversation is not a record."),  # nothing stored
        (b"{}", "A saved conversation is not a record."),  # bytes, not text
        ("not json", "A saved conversation could not be read."),  # not JSON
        ("[]", "A saved conversation is not a record of this Space."),  # a list
        ('{"v": 1}', "A saved conversation is not a record of this Space."),  # fields missing
        (
            record_with(extra=1),
            "A saved conversation is not a record of this Space.",
        ),  # a field more than a record has
        (record_with(v=2), "A saved conversation was saved by another version of this Space."),  # another version
        (" " * (8 * 10_000 + 65_537), "A saved conversation is larger than any this Space stores."),  # oversized
    )

    @pytest.mark.parametrize(("raw", "message"), RECORDS, ids=range(len(RECORDS)))
    def test_malformed_records_are_refused(self, raw, message):
        """Anything that is not a record of this Space is refused with what is wrong."""
        with pytest.raises(StoredConversationError) as info:
            SEAL.open("abc123", raw)
        assert str(info.value) == message

    def test_signed_turns_are_still_parsed_strictly(self):
        """A record that passes its check is parsed like any client input: past the limits it is refused."""
        small = Seal("history-secret-for-tests", limits=Limits(max_messages=3, max_chars=10_000))
        with pytest.raises(StoredConversationError) as info:
            small.open("abc123", small.seal(CONVERSATION))
        assert str(info.value) == (
            "A saved conversation holds what this Space never stores: history: has 4 messages; at most 3 are accepted."
        )


class TestOpenMeta:
    def test_a_signed_summary_opens(self):
        """The list of past conversations is read from each record's summary and its own signature."""
        record = json.loads(SEAL.seal(CONVERSATION))
        assert SEAL.open_meta("abc123", record["meta"], record["meta_sig"]) == META

    def test_a_tampered_summary_is_refused(self):
        """A summary whose size was lowered (to dodge the budget) does not pass."""
        record = json.loads(SEAL.seal(CONVERSATION))
        meta = {**record["meta"], "chars": 1}
        with pytest.raises(StoredConversationError) as info:
            SEAL.open_meta("abc123", meta, record["meta_sig"])
        assert str(info.value) == NOT_PASSED

    @pytest.mark.parametrize(
        "meta",
        [
            None,  # nothing
            [],  # not an object
            {"title": "t", "created": 1.0, "updated": 1.0},  # chars missing
            {"title": "t", "created": 1.0, "updated": 1.0, "chars": 1, "extra": 0},  # a field more
        ],
    )
    def test_a_malformed_summary_is_refused(self, meta):
        """A summary without exactly its four fields is refused before its signature is checked."""
        with pytest.raises(StoredConversationError) as info:
            SEAL.open_meta("abc123", meta, "0" * 64)
        assert str(info.value) == "A saved conversation has a malformed summary."

    def test_malformed_id_is_refused(self):
        """open_meta checks the key like open does."""
        record = json.loads(SEAL.seal(CONVERSATION))
        with pytest.raises(StoredConversationError, match="malformed id"):
            SEAL.open_meta("a/b", record["meta"], record["meta_sig"])

    @pytest.mark.parametrize(
        "created",
        [
            -1.0,  # before 1970
            1e11,  # past the year 5000
            True,  # a bool is not a date
        ],
    )
    def test_a_malformed_date_is_refused(self, created):
        """A date out of range (or not a number), even signed, is refused."""
        sealed = json.loads(SEAL.seal(Conversation(Meta("a", "t", created, 1.0, 0), ())))
        with pytest.raises(StoredConversationError) as info:
            SEAL.open_meta("a", sealed["meta"], sealed["meta_sig"])
        assert str(info.value) == "A saved conversation has a malformed date."


def meta(conversation_id: str, title: str, updated: float, chars: int) -> Meta:
    """A summary of another stored conversation."""
    return Meta(conversation_id, title, updated, updated, chars)


class TestPlanSave:
    def test_within_budget(self):
        """A conversation within both budgets is stored whole, with no notice and nothing dropped."""
        plan = plan_save(
            SEAL,
            "abc123",
            TURNS,
            created=1_700_000_000.0,
            listed=[],
            conversation_chars=10_000,
            total_chars_budget=100_000,
            now=1_700_000_100.5,
        )
        assert plan.conversation_id == "abc123"
        assert plan.meta == META
        assert plan.drop == ()
        assert plan.notice == ""
        assert SEAL.open("abc123", plan.record) == CONVERSATION

    def test_a_new_conversation_is_created_now(self):
        """created 0 means the conversation is new: created and updated are both now."""
        plan = plan_save(
            SEAL, "n1", TURNS[:1], created=0, listed=[], conversation_chars=10_000, total_chars_budget=100_000, now=5.0
        )
        assert (plan.meta.created, plan.meta.updated) == (5.0, 5.0)

    def test_a_long_conversation_keeps_its_newest_turns(self):
        """Past HISTORY_CONVERSATION_CHARS the oldest turns are left out of the stored copy, with a notice."""
        turns = [Turn("user", "a" * 400), Turn("assistant", "b" * 400), Turn("user", "c" * 300), Turn("assistant", "d")]
        plan = plan_save(
            SEAL, "c1", turns, created=1.0, listed=[], conversation_chars=1_000, total_chars_budget=100_000, now=2.0
        )
        assert SEAL.open("c1", plan.record).turns == tuple(turns[2:])
        assert plan.meta == Meta("c1", "a" * 59 + "…", 1.0, 2.0, 301)
        assert plan.notice == (
            "Only the latest 2 of this chat's 4 messages are kept (HISTORY_CONVERSATION_CHARS is 1,000 characters)."
        )

    def test_the_total_budget_drops_the_oldest_others(self):
        """Past HISTORY_TOTAL_CHARS the least recently updated other conversations go, with their titles."""
        known = [meta("new", "Newest", 30.0, 400), meta("old", "Oldest", 10.0, 400), meta("mid", "Middle", 20.0, 400)]
        plan = plan_save(
            SEAL, "c1", TURNS, created=1.0, listed=known, conversation_chars=10_000, total_chars_budget=600, now=40.0
        )
        assert plan.drop == ("old", "mid")
        assert plan.notice == (
            "To stay within your browser's storage, 2 oldest saved chat(s) were removed: “Oldest”, “Middle”."
        )

    def test_this_conversations_old_summary_does_not_count(self):
        """The stored summary of the conversation being saved is replaced, not counted twice or dropped."""
        known = [meta("c1", "Same chat", 1.0, 900), meta("other", "Other", 2.0, 400)]
        plan = plan_save(
            SEAL, "c1", TURNS, created=1.0, listed=known, conversation_chars=10_000, total_chars_budget=500, now=3.0
        )
        assert plan.drop == ()
        assert plan.notice == ""

    def test_many_dropped_titles_are_shortened(self):
        """The notice names the first five dropped chats, then says there were more."""
        known = [meta(f"k{i}", f"Chat {i}", float(i), 100) for i in range(7)]
        plan = plan_save(
            SEAL, "c1", TURNS, created=1.0, listed=known, conversation_chars=10_000, total_chars_budget=100, now=9.0
        )
        assert plan.drop == tuple(f"k{i}" for i in range(7))
        assert plan.notice == (
            "To stay within your browser's storage, 7 oldest saved chat(s) were removed: "
            "“Chat 0”, “Chat 1”, “Chat 2”, “Chat 3”, “Chat 4” and more."
        )

    def test_both_notices_together(self):
        """A long conversation that also pushes others out gets both notices, in order."""
        turns = [Turn("user", "a" * 600), Turn("assistant", "b" * 600), Turn("user", "c"), Turn("assistant", "d")]
        known = [meta("old", "Old", 1.0, 9_500)]
        plan = plan_save(
            SEAL, "c1", turns, created=1.0, listed=known, conversation_chars=1_000, total_chars_budget=9_000, now=2.0
        )
        assert plan.drop == ("old",)
        assert plan.notice == (
            "Only the latest 2 of this chat's 4 messages are kept "
            "(HISTORY_CONVERSATION_CHARS is 1,000 characters). "
            "To stay within your browser's storage, 1 oldest saved chat(s) were removed: “Old”."
        )


class TestExportMarkdown:
    def test_content(self):
        """A heading with the title, each message under its speaker, thinking as a quote, notices in italics."""
        assert export_markdown(CONVERSATION) == (
            "# What is 2 + 2?\n"
            "\n"
            "## You\n"
            "\n"
            "What is 2 + 2?\n"
            "\n"
            "## Assistant\n"
            "\n"
            "> **Thinking (1.5 s)**\n"
            "> Add them.\n"
            ">\n"
            "> Easy.\n"
            "\n"
            "4.\n"
            "\n"
            "## You\n"
            "\n"
            "Thanks\n"
            "\n"
            "## Assistant\n"
            "\n"
            "You're welcome\n"
            "\n"
            "*The reply was cut at the token limit.*\n"
        )

    def test_thinking_without_time(self):
        """Thinking with no recorded time has no seconds in its heading."""
        conversation = Conversation(META, (Turn("assistant", "a", thinking="t"),))
        assert export_markdown(conversation) == "# What is 2 + 2?\n\n## Assistant\n\n> **Thinking**\n> t\n\na\n"


class TestExportImport:
    def test_export_json_shape(self):
        """The export names its format and version, and carries the title, dates and messages."""
        value = json.loads(export_json(CONVERSATION))
        assert value == {
            "format": EXPORT_FORMAT,
            "version": 1,
            "title": "What is 2 + 2?",
            "created": 1_700_000_000.0,
            "updated": 1_700_000_100.5,
            "messages": [
                {"role": "user", "text": "What is 2 + 2?"},
                {"role": "assistant", "text": "4.", "thinking": "Add them.\n\nEasy.", "thinking_seconds": 1.5},
                {"role": "user", "text": "Thanks"},
                {"role": "assistant", "text": "You're welcome", "notice": "The reply was cut at the token limit."},
            ],
        }

    def test_round_trip(self):
        """An export imports back as the same turns, title and creation date, under a new id."""
        imported = import_json(export_json(CONVERSATION).encode(), limits=LIMITS, max_bytes=1_000_000)
        assert imported.turns == TURNS
        assert imported.meta.title == META.title
        assert imported.meta.created == META.created
        assert imported.meta.chars == META.chars
        assert imported.meta.id != META.id
        assert len(imported.meta.id) == 32

    def test_non_ascii_round_trip(self):
        """Text beyond ASCII comes back unchanged."""
        conversation = Conversation(Meta("x", "Grüße ✓", 1.0, 2.0, 3), (Turn("user", "Grüße ✓ 😀"),))
        imported = import_json(export_json(conversation).encode(), limits=LIMITS, max_bytes=1_000_000)
        assert (imported.meta.title, imported.turns) == ("Grüße ✓", conversation.turns)

    def test_missing_title_comes_from_the_messages(self):
        """A hand-written export without a title, or a blank one, gets one from its first message."""
        for title in ({}, {"title": "  "}, {"title": 5}):
            raw = json.dumps(
                {"format": EXPORT_FORMAT, "version": 1, "messages": [{"role": "user", "text": "Hi"}]} | title
            )
            assert import_json(raw.encode(), limits=LIMITS, max_bytes=1_000_000).meta.title == "Hi"

    def test_a_long_title_is_shortened_and_cleaned(self):
        """An imported title is cleaned and cut to 60 characters."""
        raw = json.dumps(
            {"format": EXPORT_FORMAT, "version": 1, "title": "\x00" + "t" * 100, "messages": [{"role": "user"}]}
        )
        assert import_json(raw.encode(), limits=LIMITS, max_bytes=1_000_000).meta.title == "t" * 60

    @pytest.mark.parametrize(
        "created",
        [
            None,  # missing
            "yesterday",  # text
            True,  # a bool
            0,  # not positive
            -5,  # before 1970
            float("nan"),  # not a number at all
        ],
    )
    def test_a_missing_or_bad_date_is_now(self, created):
        """A creation date that is not a positive number is replaced by the time of the import."""
        raw = json.dumps({"format": EXPORT_FORMAT, "version": 1, "created": created, "messages": [{"role": "user"}]})
        imported = import_json(raw.encode(), limits=LIMITS, max_bytes=1_000_000)
        assert imported.meta.created == imported.meta.updated

    @pytest.mark.parametrize(
        "created",
        [
            pytest.param("1" + "0" * 400, id="huge-integer"),  # an integer beyond any float, as JSON allows
            pytest.param("1e300", id="huge-float"),  # a number far beyond any date
            pytest.param("Infinity", id="infinity"),  # Python's JSON reads it
        ],
    )
    def test_an_imported_date_can_be_stored_and_reopened(self, created):
        """Whatever the file's date, an import is refused with ConversationError or can be saved and reopened."""
        raw = f'{{"format": "{EXPORT_FORMAT}", "version": 1, "created": {created}, "messages": [{{"role": "user"}}]}}'
        try:
            imported = import_json(raw.encode(), limits=LIMITS, max_bytes=1_000_000)
        except ConversationError:
            return
        plan = plan_save(
            SEAL,
            imported.meta.id,
            imported.turns,
            created=imported.meta.created,
            listed=[],
            conversation_chars=10_000,
            total_chars_budget=100_000,
        )
        assert SEAL.open(imported.meta.id, plan.record).turns == imported.turns

    def test_messages_are_parsed_strictly(self):
        """An import is parsed like any client conversation."""
        raw = json.dumps({"format": EXPORT_FORMAT, "version": 1, "messages": [{"role": "system", "text": "x"}]})
        with pytest.raises(ConversationError, match=r"^history: message 1: 'role' must be"):
            import_json(raw.encode(), limits=LIMITS, max_bytes=1_000_000)

    REFUSED = (
        (b"x" * 101, "file: is 101 bytes; at most 100 are accepted."),  # over the size limit
        (b"not json", "file: is not a JSON export of a conversation."),  # not JSON
        (b"\xff\xfe", "file: is not a JSON export of a conversation."),  # not UTF-8
        (b"[]", "file: is not a conversation export (its \"format\" must be 'space-chat/conversation')."),  # a list
        (
            b'{"format": "other", "version": 1, "messages": []}',
            "file: is not a conversation export (its \"format\" must be 'space-chat/conversation').",
        ),  # another format
        (
            b'{"format": "space-chat/conversation", "version": 2, "messages": []}',
            "file: is a conversation export of another version.",
        ),  # a later version
        (
            b'{"format": "space-chat/conversation", "messages": []}',
            "file: is a conversation export of another version.",
        ),  # no version
        (
            b'{"format": "space-chat/conversation", "version": 1, "messages": [], "id": "x"}',
            "file: is a conversation export of another version.",
        ),  # a field this version does not have
        (b'{"format": "space-chat/conversation", "version": 1, "messages": []}', "file: holds no messages."),  # empty
        (b'{"format": "space-chat/conversation", "version": 1}', "file: holds no messages."),  # no messages at all
    )

    @pytest.mark.parametrize(("raw", "message"), REFUSED, ids=range(len(REFUSED)))
    def test_refused(self, raw, message):
        """Wrong format, version, size, or nothing in it: refused with what is wrong."""
        with pytest.raises(ConversationError) as info:
            import_json(raw, limits=LIMITS, max_bytes=100)
        assert str(info.value) == message


def archive(*, total_chars: int = 100_000) -> ChatArchive:
    return ChatArchive(SEAL, conversation_chars=10_000, total_chars=total_chars, max_import_bytes=100_000)


def summary(record: str, key: str) -> dict[str, object]:
    """What saved_chats.js sends of one stored record: its id, summary and the summary's signature."""
    parsed = json.loads(record)
    return {"id": key, "meta": parsed["meta"], "meta_sig": parsed["meta_sig"]}


class TestChatArchive:
    """Every change of one tab's saved chats, as plain data: the open chat, the list, a notice, the plan."""

    def test_a_saved_chat_is_listed_and_written_once(self):
        """Save after a turn: the plan writes the sealed record (base None: never stored by this tab), the list
        shows it, selected; a second save says when this tab last stored it."""
        saved = SavedChats()
        first = archive().save(saved, TURNS)
        assert first.plan["write"]["id"] == saved.open.id
        assert first.plan["write"]["base"] is None
        assert first.listing == (("What is 2 + 2?", saved.open.id),)
        assert first.selected == saved.open.id
        assert first.turns is None
        second = archive().save(saved, TURNS)
        assert second.plan["write"]["base"] == saved.listed[0].updated or second.plan["write"]["base"] is not None
        assert first.plan["nonce"] != second.plan["nonce"]

    def test_a_chat_no_model_answered_is_not_kept(self):
        """Every reply failed before a word (nothing configured, the server down): nothing is written, and a copy
        saved earlier leaves the browser."""
        saved = SavedChats()
        failed = (Turn("user", "hi"), Turn("assistant", "", notice="No model is configured."))
        change = archive().save(saved, failed)
        assert change.plan["write"] is None
        assert change.plan["drop"] == [saved.open.id]
        assert change.listing == ()

    def test_restore_reopens_this_tabs_chat_and_lists_the_others(self):
        """Page load: verified summaries are listed, the open record is reopened (its turns), the rest stays."""
        other = SavedChats()
        other_record = archive().save(other, TURNS).plan["write"]["record"]
        mine = SavedChats()
        record = archive().save(mine, TURNS[:2]).plan["write"]["record"]
        tab = SavedChats()
        snapshot = {
            "metas": [summary(other_record, other.open.id), summary(record, mine.open.id)],
            "open": {"id": mine.open.id, "record": record},
        }
        change = archive().restore(tab, snapshot)
        assert change.turns == TURNS[:2]
        assert tab.open.id == mine.open.id
        assert {key for _, key in change.listing} == {other.open.id, mine.open.id}
        assert change.plan["current"] == mine.open.id
        assert change.plan["drop"] == []
        assert change.notice == ""

    def test_restore_drops_what_fails_its_check(self):
        """A summary signed under another secret is removed from the browser, with one notice."""
        record = Seal("another-secret", limits=LIMITS).seal(CONVERSATION)
        change = archive().restore(SavedChats(), {"metas": [summary(record, "abc123")], "open": None})
        assert change.plan["drop"] == ["abc123"]
        assert change.listing == ()
        assert "could not be verified" in change.notice

    def test_restore_keeps_the_open_chat_and_drops_the_oldest_past_the_budget(self):
        """Past HISTORY_TOTAL_CHARS (another tab saved, or the budget was lowered): the oldest go, never the open."""
        chats = []
        for _ in range(3):
            saved = SavedChats()
            chats.append((saved.open.id, archive().save(saved, TURNS).plan["write"]["record"]))
        oldest, middle, newest = chats
        snapshot = {
            "metas": [summary(record, key) for key, record in chats],
            "open": {"id": oldest[0], "record": oldest[1]},
        }
        tab = SavedChats()
        change = archive(total_chars=2 * META.chars).restore(tab, snapshot)
        assert tab.open.id == oldest[0]
        assert change.plan["drop"] == [middle[0]]
        assert {key for _, key in change.listing} == {oldest[0], newest[0]}
        assert "1 oldest saved chat(s) were removed" in change.notice

    def test_a_malformed_snapshot_is_an_empty_browser(self):
        """What the browser sent is not the script's shape: nothing listed, a new chat, nothing dropped."""
        change = archive().restore(SavedChats(), {"metas": "lots", "evil": 1})
        assert (change.turns, change.listing, change.plan["drop"]) == ((), (), [])

    def test_reopen_and_delete(self):
        """Reopen opens the picked record; delete drops it from the browser and leaves a new chat open."""
        first = SavedChats()
        record = archive().save(first, TURNS).plan["write"]["record"]
        tab = SavedChats()
        change = archive().reopen(tab, {"metas": [], "open": {"id": first.open.id, "record": record}})
        assert change.turns == TURNS
        assert change.plan["current"] == first.open.id
        gone = archive().delete(tab)
        assert gone.turns == ()
        assert gone.plan == {**gone.plan, "drop": [first.open.id], "current": None}
        assert tab.open.id != first.open.id

    def test_reopen_refuses_a_missing_or_altered_record(self):
        """A record that is gone, or fails its check, is an error to show, and nothing changes."""
        tab = SavedChats()
        with pytest.raises(StoredConversationError, match="no longer saved"):
            archive().reopen(tab, {"metas": [], "open": None})
        with pytest.raises(StoredConversationError):
            archive().reopen(tab, {"metas": [], "open": {"id": "abc123", "record": record_with(sig="0" * 64)}})

    def test_import_opens_a_new_chat_and_saves_it(self):
        """An export, imported: a new id, its turns open, written to the browser at once."""
        tab = SavedChats()
        change = archive().import_chat(tab, export_json(CONVERSATION).encode())
        assert change.turns == TURNS
        assert tab.open.id != CONVERSATION.meta.id
        assert change.plan["write"]["id"] == tab.open.id
        assert change.selected == tab.open.id

    def test_the_open_chat_keeps_its_first_title(self):
        """A chat's title is fixed by its first save, even when its first message later leaves the conversation."""
        tab = SavedChats(open=OpenChat(title="Kept title"))
        archive().save(tab, TURNS)
        assert tab.listed[0].title == "Kept title"

    def test_export(self):
        """Markdown to read and JSON to import again, named after the title."""
        tab = SavedChats()
        markdown = archive().export(tab, TURNS, "md")
        assert (markdown.name, markdown.type) == ("what-is-2-2.md", "text/markdown")
        assert markdown.content.startswith("# What is 2 + 2?")
        exported = archive().export(tab, TURNS, "json")
        assert import_json(exported.content.encode(), limits=LIMITS, max_bytes=100_000).turns == TURNS
