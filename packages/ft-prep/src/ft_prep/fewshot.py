"""The case study's baseline prompts: few-shot text for completion models, messages for chat models.

`fewshot` records carry `prompt` (ending where the answer starts) and `stop`;
`chat` records carry `messages` for an OpenAI-compatible chat endpoint.
"""

from __future__ import annotations

from ft_common.tasks.viggo import ATTRIBUTES, FUNCTIONS

# --- ViGGO --------------------------------------------------------------------------------
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


def viggo_fewshot(sentence: str) -> tuple[str, list[str]]:
    # Not a bare "\n": small models often open with a line break and would stop at once.
    return f"{VIGGO_INSTRUCTION}Sentence: {sentence}\nOutput:", ["\n\n", "\nSentence", "\nExample"]


def viggo_chat(sentence: str) -> list[dict]:
    return [{"role": "user", "content": f"{VIGGO_INSTRUCTION}{sentence}"}]


# --- GSM8K --------------------------------------------------------------------------------
# The 8-shot chain-of-thought exemplars of Wei et al. (2022), verbatim, each closed with GSM8K's
# own `#### N` line so that completions end in the form ft-score parses.

GSM8K_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
     "are done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there "
     "must have been 21 - 15 = 6. The answer is 6.", "6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.", "5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
     "eating 35, they had 74 - 35 = 39. The answer is 39.", "39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many "
     "lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny "
     "20 - 12 = 8. The answer is 8.", "8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys "
     "does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more "
     "toys. 5 + 4 = 9. The answer is 9.", "9"),
    ("There were nine computers in the server room. Five more computers were installed each day, "
     "from monday to thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = "
     "20 computers were added. 9 + 20 is 29. The answer is 29.", "29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. "
     "How many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After "
     "losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.", "33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has "
     "23 - 15 dollars left. 23 - 15 is 8. The answer is 8.", "8"),
)

GSM8K_FEWSHOT = "".join(f"Q: {q}\nA: {a}\n#### {n}\n\n" for q, a, n in GSM8K_EXAMPLES)
GSM8K_SYSTEM = ("Solve the grade-school maths problem step by step. End with a last line of the form "
                "'#### N', where N is the final numeric answer.")


def gsm8k_fewshot(question: str) -> tuple[str, list[str]]:
    return f"{GSM8K_FEWSHOT}Q: {question}\nA:", ["\n\n", "\nQ:"]


def gsm8k_chat(question: str) -> list[dict]:
    messages = [{"role": "system", "content": GSM8K_SYSTEM}]
    for q, a, n in GSM8K_EXAMPLES:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": f"{a}\n#### {n}"}]
    return messages + [{"role": "user", "content": question}]


# --- MathQA -------------------------------------------------------------------------------
# No prompt in the case study (MathQA was a fine-tuning stage); the same shape as GSM8K's, with
# the options listed and the answer a letter after `####`.

MATHQA_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("a shop sells pens at $ 3 each . how much do 7 pens cost ?\n"
     "Options: a ) 18 , b ) 21 , c ) 24 , d ) 27 , e ) 30",
     "each pen costs 3 , so 7 pens cost 7 * 3 = 21 . answer : b", "b"),
    ("a train travels 120 km in 2 hours . what is its speed in km / h ?\n"
     "Options: a ) 40 , b ) 50 , c ) 60 , d ) 70 , e ) 80",
     "speed = distance / time = 120 / 2 = 60 km / h . answer : c", "c"),
)
MATHQA_SYSTEM = ("Solve the multiple-choice maths problem step by step. End with a last line of the "
                 "form '#### X', where X is the letter (a-e) of the correct option.")
MATHQA_FEWSHOT = "".join(f"Q: {q}\nA: {a}\n#### {n}\n\n" for q, a, n in MATHQA_EXAMPLES)


def mathqa_fewshot(problem: str) -> tuple[str, list[str]]:
    return f"{MATHQA_FEWSHOT}Q: {problem}\nA:", ["\n\n", "\nQ:"]


def mathqa_chat(problem: str) -> list[dict]:
    messages = [{"role": "system", "content": MATHQA_SYSTEM}]
    for q, a, n in MATHQA_EXAMPLES:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": f"{a}\n#### {n}"}]
    return messages + [{"role": "user", "content": problem}]


# --- SQL ----------------------------------------------------------------------------------
# The case study's baseline: the question and the CREATE TABLE context; the answer inside
# <SQL></SQL> tags (the few-shot prompt ends with the opening tag, so the stop is the closing one).

SQL_SYSTEM = ("You are a SQL expert. Given the CREATE TABLE statements of some tables and a question "
              "about them, write one SQL query that answers the question. Write the query inside "
              "<SQL></SQL> tags and nothing else.")
SQL_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("CREATE TABLE head (age INTEGER)", "How many heads of the departments are older than 56 ?",
     "SELECT COUNT(*) FROM head WHERE age > 56"),
    ("CREATE TABLE table_1000181_1 (notes VARCHAR, current_slogan VARCHAR)",
     "Tell me what the notes are for South Australia",
     "SELECT notes FROM table_1000181_1 WHERE current_slogan = 'SOUTH AUSTRALIA'"),
)


def _sql_user(question: str, context: str) -> str:
    return f"Tables:\n{context}\n\nQuestion: {question}"


SQL_FEWSHOT = SQL_SYSTEM + "\n\n" + "".join(
    f"{_sql_user(q, c)}\nAnswer: <SQL>{a}</SQL>\n\n" for c, q, a in SQL_EXAMPLES
)


def sql_fewshot(question: str, context: str) -> tuple[str, list[str]]:
    return f"{SQL_FEWSHOT}{_sql_user(question, context)}\nAnswer: <SQL>", ["</SQL>"]


def sql_chat(question: str, context: str) -> list[dict]:
    messages = [{"role": "system", "content": SQL_SYSTEM}]
    for c, q, a in SQL_EXAMPLES:
        messages += [{"role": "user", "content": _sql_user(q, c)}, {"role": "assistant", "content": f"<SQL>{a}</SQL>"}]
    return messages + [{"role": "user", "content": _sql_user(question, context)}]
