"""ViGGO: sentence (`ref`) -> meaning representation (`mr`).

Local CSVs have columns `mr,ref`; the hub's GEM/viggo has `meaning_representation,target`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ft_common.tasks.viggo import ATTRIBUTES, FUNCTIONS

from ft_prep.common import BadRow, Row, Stats, convert, field, task_record

# Sources (read by ft_prep.sources): the hub's dataset and the local files per split.
HUB = ("GEM/viggo", None, {"train": "train", "valid": "validation", "test": "test"})
LOCAL = {"train": ("train.csv",), "valid": ("valid.csv", "validation.csv"), "test": ("test.csv",)}

# (input column, output column) pairs, local first, then the hub's names.
COLUMNS = (("ref", "mr"), ("target", "meaning_representation"))


def fields(row: Row) -> tuple[str, str]:
    """(sentence, mr) of a row in either column layout."""
    for inp, out in COLUMNS:
        if inp in row.data or out in row.data:
            sentence, mr = field(row, inp).strip(), field(row, out).strip()
            if not sentence or not mr:
                raise BadRow(f"empty {inp if not sentence else out!r}")
            return sentence, mr
    raise BadRow("missing column 'mr' (expected columns mr,ref)")


# Baseline prompts: few-shot text for completion models (`fewshot` records carry `prompt`,
# ending where the answer starts, and `stop`), messages for chat models (`chat` records).
# --- Prompts: ViGGO --------------------------------------------------------------------------------
# The case study's instruction and its 9 worked examples (one per function). The attribute
# list is ft_common's precedence order (the order ViGGO's MRs use and ft-score checks), so the
# "order listed above" rule agrees with the examples.

VIGGO_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Dirt: Showdown from 2012 is a sport racing game for the PlayStation, Xbox, PC rated E 10+ "
     "(for Everyone 10 and Older). It's not available on Steam, Linux, or Mac.",
     "inform(name[Dirt: Showdown], release_year[2012], esrb[E 10+ (for Everyone 10 and Older)], "
     "genres[driving/racing, sport], platforms[PlayStation, Xbox, PC], available_on_steam[no], "
     "has_linux_release[no], has_mac_release[no])"),
    ("Were there even any terrible games in 2014?",
     "request(release_year[2014], specifier[terrible])"),
    ("Adventure games that combine platforming and puzzles can be frustrating to play, but the side "
     "view perspective is perfect for them. That's why I enjoyed playing Little Nightmares.",
     "give_opinion(name[Little Nightmares], rating[good], genres[adventure, platformer, puzzle], "
     "player_perspective[side view])"),
    ("Since we're on the subject of games developed by Telltale Games, I'm wondering, have you "
     "played The Wolf Among Us?",
     "recommend(name[The Wolf Among Us], developer[Telltale Games])"),
    ("Layers of Fear, the indie first person point-and-click adventure game?",
     "confirm(name[Layers of Fear], genres[adventure, indie, point-and-click], "
     "player_perspective[first person])"),
    ("I bet you like it when you can play games on Steam, like Worms: Reloaded, right?",
     "suggest(name[Worms: Reloaded], available_on_steam[yes])"),
    ("I recall you saying that you really enjoyed The Legend of Zelda: Ocarina of Time. Are you "
     "typically a big fan of games on Nintendo rated E (for Everyone)?",
     "verify_attribute(name[The Legend of Zelda: Ocarina of Time], esrb[E (for Everyone)], "
     "rating[excellent], platforms[Nintendo])"),
    ("So what is it about the games that were released in 2005 that you find so excellent?",
     "request_explanation(release_year[2005], rating[excellent])"),
    ("Do you think Mac is a better gaming platform than others?",
     "request_attribute(has_mac_release[])"),
)

VIGGO_INSTRUCTION = (
    "Given a target sentence construct the underlying meaning representation of the input sentence "
    "as a single function with attributes and attribute values. This function should describe the "
    "target string accurately and the function must be one of the following "
    f"{list(FUNCTIONS)}.\n"
    f"The attributes must be one of the following: {list(ATTRIBUTES)}\n"
    "The order your list the attributes within the function must follow the order listed above. "
    f"For example the '{ATTRIBUTES[0]}' attribute must always come before the '{ATTRIBUTES[1]}' "
    "attribute, and so forth.\n\n"
    "For each attribute, fill in the corresponding value of the attribute within brackets. "
    'A couple of examples are below. Note: you are to output the string after "Output: ". '
    'Do not include "Output: " in your answer.\n\n'
    + "\n\n".join(
        f"Example {i})\nSentence: {sentence}\nOutput: {mr}"
        for i, (sentence, mr) in enumerate(VIGGO_EXAMPLES, start=1)
    )
    + "\n\nGive the output for the following sentence:\n"
)


def fewshot_prompt(sentence: str) -> tuple[str, list[str]]:
    # Not a bare "\n": small models often open with a line break and would stop at once.
    return f"{VIGGO_INSTRUCTION}Sentence: {sentence}\nOutput:", ["\n\n", "\nSentence", "\nExample"]


def chat_messages(sentence: str) -> list[dict]:
    return [{"role": "user", "content": f"{VIGGO_INSTRUCTION}{sentence}"}]


def make_record(row: Row, split: str, fmt: str) -> dict:
    sentence, mr = fields(row)
    return task_record("viggo", split, fmt, row.index, sentence, mr, {},
                       lambda: fewshot_prompt(sentence), lambda: chat_messages(sentence))


def records(rows: Iterable[Row], split: str, fmt: str = "tokens", skip_bad: bool = False,
            stats: Stats | None = None) -> Iterator[dict]:
    return convert(rows, lambda r: make_record(r, split, fmt), skip_bad, stats if stats is not None else Stats())


def command():
    """`ft-prep viggo`, found by ft_prep.cli through the task registry."""
    import sys

    from ft_prep.command import task_command

    @task_command("viggo", sys.modules[__name__])
    def viggo():
        """ViGGO: a video-game sentence -> its meaning representation (GEM/viggo).

        \b
          ft-prep viggo --split valid | ft-infer -m ckpt | ft-score viggo
          ft-prep viggo --data ../shared/data --format chat --limit 50 | ft-infer -m gpt --engine openai
        """

    return viggo
