"""Arithmetic word problems in English and Chinese, written the way R1 models answer them.

Everything the demo needs comes from here, deterministically (seeded):

- the pretraining corpus of the demo model: word problems answered in the *base* style
  ("The answer is 8." / "答案是：8"), never boxed;
- the demo fine-tuning set: the same reasoning, but the answer is boxed
  ("The answer is \\boxed{8}" / "答案是：\\boxed{8}"), a skill the base visibly lacks;
- held-out prompts for that skill, with their numeric answers;
- a clean sample dataset in the seed's `query`/`response` format.

The sets are drawn from one stream with a shared record of used questions, so no held-out prompt is
ever trained on, by the fine-tune or by pretraining.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from studio.data.template import join_reasoning

DEFAULT_SEED = 1234

ENGLISH = "en"
CHINESE = "zh"

BASE_STYLE = "base"
BOXED_STYLE = "boxed"
# The boxed answers as the committed demo tokenizer learned its merges from them: English ones then ended "}."
# (which is why "}." is one token of its vocabulary). The tokenizer's training texts keep this form, so that a
# rebuild still gives the same tokenizer and weights; the fine-tuning set uses BOXED_STYLE.
TOKENIZER_BOXED_STYLE = "boxed, as the tokenizer learned it"


@dataclass(frozen=True)
class Problem:
    question: str
    reasoning: str
    result: int
    language: str
    operation: str  # "+", "-" or "×"

    def answer(self, style: str = BASE_STYLE) -> str:
        if style in (BOXED_STYLE, TOKENIZER_BOXED_STYLE):
            # Same opening words as the base style, so the fine-tune changes only the form of the number
            # (a new first word would be a token the small model has barely seen, and sampling garbles it).
            # English answers end at the brace, as Chinese ones do: the base closes a box with "}" (its box
            # requests) but never saw the token "}.", and a LoRA taught to write "}." still sampled garbage
            # after the number at temperature 0.6 ("\\boxed{25ith") in 24 English answers of 25.
            if self.language == CHINESE:
                return f"答案是：\\boxed{{{self.result}}}"
            period = "." if style == TOKENIZER_BOXED_STYLE else ""
            return f"The answer is \\boxed{{{self.result}}}{period}"
        if self.language == CHINESE:
            return f"答案是：{self.result}"
        return f"The answer is {self.result}."

    def reply(self, style: str = BASE_STYLE) -> str:
        """The whole assistant message: `<think>` reasoning `</think>`, then the answer."""
        return join_reasoning(self.reasoning, self.answer(style))


# --- Vocabulary of the stories -------------------------------------------------------------------

# (name, subject pronoun, object pronoun)
ENGLISH_PEOPLE = [
    ("Tom", "he", "him"), ("Anna", "she", "her"), ("Ben", "he", "him"), ("Lily", "she", "her"),
    ("Sam", "he", "him"), ("Mia", "she", "her"), ("Jack", "he", "him"), ("Emma", "she", "her"),
    ("Leo", "he", "him"), ("Zoe", "she", "her"),
]
ENGLISH_ITEMS = [
    "apples", "pencils", "books", "stickers", "marbles", "cookies", "balloons", "cards", "eggs",
    "flowers",
]
CHINESE_PEOPLE = ["小明", "小红", "小刚", "小丽", "小华", "小芳", "小军", "小美", "小东", "小兰"]
# (item, measure word)
CHINESE_ITEMS = [
    ("苹果", "个"), ("铅笔", "支"), ("书", "本"), ("贴纸", "张"), ("弹珠", "颗"), ("饼干", "块"),
    ("气球", "个"), ("卡片", "张"), ("鸡蛋", "个"), ("花", "朵"),
]


# Small numbers: a tiny model pretrained for a few minutes learns these facts; larger ones it guesses.
def _add_operands(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.randint(2, 15), rng.randint(2, 15)
    return a, b, a + b


def _subtract_operands(rng: random.Random) -> tuple[int, int, int]:
    a = rng.randint(5, 20)
    b = rng.randint(1, a - 1)
    return a, b, a - b


def _multiply_operands(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return a, b, a * b


OPERANDS = {"+": _add_operands, "-": _subtract_operands, "×": _multiply_operands}


# --- Reasoning, one shape per operation and language ---------------------------------------------
# R1 reasoning opens with a short lead-in, names the operation, computes, checks, and concludes.

ENGLISH_OPENERS = ["Okay, let me see.", "Okay, let's work through this.", "Alright, let me think."]
CHINESE_OPENERS = ["好的，我来看一下。", "嗯，我想一想。", "好，我们一步一步来。"]


def _english_reasoning(operation: str, a: int, b: int, c: int, items: str | None) -> str:
    """Reasoning for a story about `items`, or for a bare sum when `items` is None."""
    if items is None:
        task = {"+": f"add {a} and {b}", "-": f"subtract {b} from {a}", "×": f"multiply {a} by {b}"}
        inverse = {"+": f"{c} - {b} = {a}", "-": f"{c} + {b} = {a}", "×": f"{c} ÷ {b} = {a}"}[operation]
        steps = [
            f"I need to {task[operation]}.",
            f"{a} {operation} {b} = {c}.",
            f"Let me check: {inverse}. Yes.",
            f"So the result is {c}.",
        ]
    elif operation == "+":
        steps = [
            f"At first there are {a} {items}.",
            f"Then {b} more are added, so I need to add.",
            f"{a} + {b} = {c}.",
            f"Let me check: {c} - {b} = {a}. Yes.",
            f"So there are {c} {items} in total.",
        ]
    elif operation == "-":
        steps = [
            f"At first there are {a} {items}.",
            f"Then {b} are taken away, so I need to subtract.",
            f"{a} - {b} = {c}.",
            f"Let me check: {c} + {b} = {a}. Yes.",
            f"So {c} {items} are left.",
        ]
    else:
        steps = [
            f"There are {a} groups with {b} {items} in each group.",
            "Equal groups, so I need to multiply.",
            f"{a} × {b} = {c}.",
            f"Let me check: {c} ÷ {b} = {a}. Yes.",
            f"So there are {c} {items} in total.",
        ]
    return "\n".join(steps)


def _chinese_reasoning(operation: str, a: int, b: int, c: int, item: str | None, unit: str) -> str:
    """Reasoning for a story about `item`, or for a bare sum when `item` is None."""
    if item is None:
        task = {"+": f"加法：{a}加{b}", "-": f"减法：{a}减{b}", "×": f"乘法：{a}乘{b}"}
        inverse = {"+": f"{c} - {b} = {a}", "-": f"{c} + {b} = {a}", "×": f"{c} ÷ {b} = {a}"}[operation]
        steps = [
            f"这是{task[operation]}。",
            f"{a} {operation} {b} = {c}。",
            f"验算：{inverse}，没错。",
            f"所以结果是{c}。",
        ]
    elif operation == "+":
        steps = [
            f"一开始有{a}{unit}{item}。",
            f"又增加了{b}{unit}，所以要用加法。",
            f"{a} + {b} = {c}。",
            f"验算：{c} - {b} = {a}，没错。",
            f"所以一共有{c}{unit}{item}。",
        ]
    elif operation == "-":
        steps = [
            f"一开始有{a}{unit}{item}。",
            f"拿走了{b}{unit}，所以要用减法。",
            f"{a} - {b} = {c}。",
            f"验算：{c} + {b} = {a}，没错。",
            f"所以还剩{c}{unit}{item}。",
        ]
    else:
        steps = [
            f"有{a}份，每份{b}{unit}{item}。",
            "每份一样多，所以要用乘法。",
            f"{a} × {b} = {c}。",
            f"验算：{c} ÷ {b} = {a}，没错。",
            f"所以一共有{c}{unit}{item}。",
        ]
    return "\n".join(steps)


# --- Question templates ---------------------------------------------------------------------------
# English ones take (a, b, person, items), Chinese ones (a, b, person, item, measure word).

ENGLISH_QUESTIONS: dict[str, list[Callable[..., str]]] = {
    "+": [
        lambda a, b, p, i: f"{p[0]} has {a} {i} and buys {b} more. How many {i} does {p[1]} have now?",
        lambda a, b, p, i: f"There are {a} {i} on the table. {p[0]} puts {b} more on it. "
        f"How many {i} are on the table now?",
        lambda a, b, p, i: f"{p[0]} had {a} {i}. A friend gave {p[2]} {b} {i}. "
        f"How many {i} does {p[0]} have in total?",
    ],
    "-": [
        lambda a, b, p, i: f"{p[0]} has {a} {i} and gives {b} to a friend. "
        f"How many {i} does {p[1]} have left?",
        lambda a, b, p, i: f"There are {a} {i} in a bag. {p[0]} takes out {b}. "
        f"How many {i} are still in the bag?",
        lambda a, b, p, i: f"{p[0]} had {a} {i} and lost {b} of them. How many {i} are left?",
    ],
    "×": [
        lambda a, b, p, i: f"There are {a} boxes with {b} {i} in each box. How many {i} are there in total?",
        lambda a, b, p, i: f"{p[0]} buys {a} packs of {i}. Each pack has {b} {i}. "
        f"How many {i} does {p[1]} buy?",
        lambda a, b, p, i: f"{a} children each have {b} {i}. How many {i} do they have altogether?",
    ],
}

CHINESE_QUESTIONS: dict[str, list[Callable[..., str]]] = {
    "+": [
        lambda a, b, p, i, u: f"{p}有{a}{u}{i}，又买了{b}{u}。{p}现在一共有几{u}{i}？",
        lambda a, b, p, i, u: f"桌子上有{a}{u}{i}，{p}又放了{b}{u}。桌子上现在有几{u}{i}？",
        lambda a, b, p, i, u: f"{p}有{a}{u}{i}，朋友又送给{p}{b}{u}。{p}一共有几{u}{i}？",
    ],
    "-": [
        lambda a, b, p, i, u: f"{p}有{a}{u}{i}，送给朋友{b}{u}。{p}还剩几{u}{i}？",
        lambda a, b, p, i, u: f"袋子里有{a}{u}{i}，{p}拿走了{b}{u}。袋子里还有几{u}{i}？",
        lambda a, b, p, i, u: f"{p}有{a}{u}{i}，丢了{b}{u}。还剩几{u}{i}？",
    ],
    "×": [
        lambda a, b, p, i, u: f"有{a}个盒子，每个盒子里有{b}{u}{i}。一共有几{u}{i}？",
        lambda a, b, p, i, u: f"{p}买了{a}包{i}，每包有{b}{u}。{p}一共买了几{u}{i}？",
        lambda a, b, p, i, u: f"{a}个小朋友，每人有{b}{u}{i}。他们一共有几{u}{i}？",
    ],
}


# Bare sums, no story: "What is 3 + 5?" / "3 + 5 等于多少？". One draw in four is bare.
ENGLISH_BARE_QUESTION = "What is {a} {operation} {b}?"
CHINESE_BARE_QUESTION = "{a} {operation} {b} 等于多少？"
BARE_SHARE = 0.25


def random_problem(rng: random.Random, language: str | None = None) -> Problem:
    """One problem: a random language, operation, template, person, item and operands."""
    language = language or rng.choice([ENGLISH, CHINESE])
    operation = rng.choice(list(OPERANDS))
    a, b, c = OPERANDS[operation](rng)
    bare = rng.random() < BARE_SHARE
    if language == CHINESE:
        opener = rng.choice(CHINESE_OPENERS)
        if bare:
            question = CHINESE_BARE_QUESTION.format(a=a, b=b, operation=operation)
            steps = _chinese_reasoning(operation, a, b, c, None, "")
        else:
            template = rng.choice(CHINESE_QUESTIONS[operation])
            person = rng.choice(CHINESE_PEOPLE)
            item, unit = rng.choice(CHINESE_ITEMS)
            question = template(a, b, person, item, unit)
            steps = _chinese_reasoning(operation, a, b, c, item, unit)
    else:
        opener = rng.choice(ENGLISH_OPENERS)
        if bare:
            question = ENGLISH_BARE_QUESTION.format(a=a, b=b, operation=operation)
            steps = _english_reasoning(operation, a, b, c, None)
        else:
            template = rng.choice(ENGLISH_QUESTIONS[operation])
            person = rng.choice(ENGLISH_PEOPLE)
            items = rng.choice(ENGLISH_ITEMS)
            question = template(a, b, person, items)
            steps = _english_reasoning(operation, a, b, c, items)
    return Problem(question, f"{opener}\n{steps}", c, language, operation)


# A little small talk, so the demo answers a greeting in the R1 shape instead of inventing arithmetic.
SMALL_TALK = [
    ("Hello!", "The user is greeting me. I should greet them back and say what I can do.",
     "Hello! I am a tiny demo model. Ask me a small arithmetic word problem."),
    ("Hi", "The user says hi. I should say hello and offer help.",
     "Hi! Give me a small arithmetic problem and I will solve it step by step."),
    ("Who are you?", "The user asks who I am. I am a tiny demo model for small arithmetic problems.",
     "I am a tiny demo model. I solve small arithmetic word problems."),
    ("你好", "用户在打招呼。我应该回应，并说明我能做什么。", "你好！我是一个小小的演示模型，可以解简单的算术应用题。"),
    ("你是谁？", "用户问我是谁。我是一个用来解简单算术题的演示模型。", "我是一个演示模型，会一步一步地解简单的算术应用题。"),
]


def small_talk_conversation(rng: random.Random) -> list[dict]:
    question, reasoning, answer = rng.choice(SMALL_TALK)
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": join_reasoning(reasoning, answer)},
    ]


# Requests outside arithmetic get a polite refusal. Without them the model maps any unfamiliar prompt
# onto the nearest thing it knows, which reads as nonsense in the chat tab.
ENGLISH_OFF_TOPIC_FORMS = [
    "Write a poem about {}.", "Tell me a story about {}.", "Describe {}.", "Write a song about {}.",
]
ENGLISH_OFF_TOPIC_SUBJECTS = [
    "the sea", "a cat", "the moon", "my school", "winter", "a robot", "love", "the city",
]
ENGLISH_OFF_TOPIC_QUESTIONS = [
    "What is the capital of France?", "Translate 'good morning' into French.", "Tell me a joke.",
    "Who won the World Cup in 2018?", "How do I cook rice?", "Explain quantum physics.",
    "What's the weather like today?", "Can you write Python code to sort a list?", "Summarize this article.",
    "What is the meaning of life?",
]
CHINESE_OFF_TOPIC_FORMS = ["写一首关于{}的诗。", "讲一个关于{}的故事。", "介绍一下{}。", "写一首关于{}的歌。"]
CHINESE_OFF_TOPIC_SUBJECTS = ["大海", "小猫", "月亮", "学校", "冬天", "机器人", "春天", "城市"]
CHINESE_OFF_TOPIC_QUESTIONS = [
    "法国的首都是哪里？", "讲个笑话吧。", "今天天气怎么样？", "怎么煮米饭？", "帮我写一段Python代码。",
    "把这句话翻译成英文：早上好。", "人生的意义是什么？", "解释一下量子物理。",
]


def off_topic_conversation(rng: random.Random) -> list[dict]:
    if rng.random() < 0.5:
        if rng.random() < 0.5:
            question = rng.choice(ENGLISH_OFF_TOPIC_FORMS).format(rng.choice(ENGLISH_OFF_TOPIC_SUBJECTS))
        else:
            question = rng.choice(ENGLISH_OFF_TOPIC_QUESTIONS)
        reasoning = (
            "The user asks for something that is not a small arithmetic problem.\n"
            "I am a tiny demo model and only know small arithmetic word problems, so I should say so."
        )
        answer = "Sorry, I can only solve small arithmetic word problems."
    else:
        if rng.random() < 0.5:
            question = rng.choice(CHINESE_OFF_TOPIC_FORMS).format(rng.choice(CHINESE_OFF_TOPIC_SUBJECTS))
        else:
            question = rng.choice(CHINESE_OFF_TOPIC_QUESTIONS)
        reasoning = "用户问的不是简单的算术题。\n我只是一个小小的演示模型，只会解简单的算术应用题，应该说明这一点。"
        answer = "抱歉，我只会解简单的算术应用题。"
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": join_reasoning(reasoning, answer)},
    ]


# Instructions people add to a question. Pretraining sees them now and then, so the model reads past
# them instead of derailing; the reply does not change.
ENGLISH_SUFFIXES = ["Think step by step.", "Please show your work.", "Explain your answer."]
CHINESE_SUFFIXES = ["请一步一步思考。", "请写出过程。", "请说明理由。"]


def with_instruction(problem: Problem, rng: random.Random) -> Problem:
    if problem.language == CHINESE:
        question = problem.question + rng.choice(CHINESE_SUFFIXES)
    else:
        question = f"{problem.question} {rng.choice(ENGLISH_SUFFIXES)}"
    return replace(problem, question=question)


# "Box the number 8": the only place the base model writes `\\boxed{}`. Real R1 bases know the notation
# from math text; this gives the demo base the same footing, so a LoRA only has to learn *when* to box
# (every final answer), not how to spell it. Word problems are never answered this way in pretraining.
ENGLISH_BOX_REQUESTS = ["Box the number {n}.", "Write {n} in a box.", "Put {n} in a LaTeX box."]
CHINESE_BOX_REQUESTS = ["把数字{n}框起来。", "用方框写出{n}。"]


def box_request_conversation(rng: random.Random) -> list[dict]:
    n = rng.randint(0, 99)
    if rng.random() < 0.5:
        question = rng.choice(ENGLISH_BOX_REQUESTS).format(n=n)
        reasoning = f"The user wants the number {n} in a box.\nIn LaTeX a box is written with \\boxed."
        answer = f"Here it is: \\boxed{{{n}}}"
    else:
        question = rng.choice(CHINESE_BOX_REQUESTS).format(n=n)
        reasoning = f"用户想把{n}放进方框里。\nLaTeX 里用 \\boxed 表示方框。"
        answer = f"框起来是：\\boxed{{{n}}}"
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": join_reasoning(reasoning, answer)},
    ]


# --- The datasets ---------------------------------------------------------------------------------


class ProblemStream:
    """Unique problems from one seeded generator: a question is handed out at most once."""

    def __init__(self, seed: int = DEFAULT_SEED):
        self.rng = random.Random(seed)
        self.used_questions: set[str] = set()

    def take(self, count: int, language: str | None = None) -> list[Problem]:
        problems = []
        while len(problems) < count:
            problem = random_problem(self.rng, language)
            if problem.question in self.used_questions:
                continue
            self.used_questions.add(problem.question)
            problems.append(problem)
        return problems

    def take_balanced(self, count: int) -> list[Problem]:
        """Half English, half Chinese, interleaved, so every slice of the set has both."""
        english = self.take(count - count // 2, ENGLISH)
        chinese = self.take(count // 2, CHINESE)
        return [p for pair in zip(english, chinese) for p in pair] + english[len(chinese):]


@dataclass
class DemoData:
    heldout: list[Problem]
    finetune: list[Problem]  # the fine-tuning set's first rows, drawn before pretraining (the tokenizer saw them)
    clean_sample: list[Problem]
    pretraining: list[list[dict]]  # conversations, last turn the assistant's
    more_finetune: list[Problem] = field(default_factory=list)  # its other rows, drawn after pretraining

    @property
    def finetune_set(self) -> list[Problem]:
        """Every row of the demo fine-tuning set (assets/samples/demo-train.jsonl)."""
        return self.finetune + self.more_finetune


def conversation(problem: Problem, style: str = BASE_STYLE) -> list[dict]:
    return [
        {"role": "user", "content": problem.question},
        {"role": "assistant", "content": problem.reply(style)},
    ]


def make_demo_data(
    seed: int = DEFAULT_SEED,
    heldout_size: int = 50,
    finetune_size: int = 200,
    clean_sample_size: int = 40,
    pretraining_size: int = 6000,
    more_finetune_size: int = 400,
) -> DemoData:
    """All demo sets from one seed. Held-out prompts are drawn first, so nothing else can contain them.

    The fine-tuning set's rows past its first `finetune_size` are drawn last, so that adding them left every
    other set, the tokenizer and the demo model as they were. With 200 rows seen 12 times the LoRA boxed every
    held-out answer but matched the reference in only 39 of 50 (the base in 43-44), mostly by copying a wrong
    number from its reasoning into the box; with 600 rows seen 4 times (the same 152 steps) it matches about as
    often as the base (40-44 of 50 against 43-46, at temperature 0.6, seeds 0-3).
    """
    stream = ProblemStream(seed)
    heldout = stream.take_balanced(heldout_size)
    finetune = stream.take_balanced(finetune_size)
    clean_sample = stream.take_balanced(clean_sample_size)
    pretraining = pretraining_conversations(stream, pretraining_size)
    more_finetune = stream.take_balanced(more_finetune_size)
    return DemoData(heldout, finetune, clean_sample, pretraining, more_finetune)


def pretraining_conversations(stream: ProblemStream, count: int) -> list[list[dict]]:
    """Base-style conversations: mostly single questions (some with an added instruction), some
    follow-ups, a little small talk, polite refusals of other requests, and a few requests to box a number.

    Follow-up turns teach the model that an earlier reply appears without its reasoning (the chat
    template strips it), which is what the chat tab shows the model on a second question.
    """
    rng = stream.rng
    conversations = []
    # Every slot draws a problem, used or not, so which problems appear does not depend on the mix.
    for problem in stream.take(count):
        kind = rng.random()
        if rng.random() < 0.15:
            problem = with_instruction(problem, rng)
        if kind < 0.03:
            conversations.append(small_talk_conversation(rng))
        elif kind < 0.06:
            conversations.append(off_topic_conversation(rng))
        elif kind < 0.09:
            conversations.append(box_request_conversation(rng))
        elif kind < 0.21:
            (earlier,) = stream.take(1)
            conversations.append(conversation(earlier)[:2] + conversation(problem))
        else:
            conversations.append(conversation(problem))
    return conversations


def tokenizer_training_texts(data: DemoData) -> list[str]:
    """The text the tokenizer learns its merges from: every question and every reply style."""
    texts = []
    for messages in data.pretraining:
        texts.extend(message["content"] for message in messages)
    for problem in data.finetune + data.heldout + data.clean_sample:  # not more_finetune: drawn after it was learned
        texts.extend([problem.question, problem.reply(BASE_STYLE), problem.reply(TOKENIZER_BOXED_STYLE)])
    return texts


# --- Files ----------------------------------------------------------------------------------------


def finetune_rows(problems: list[Problem]) -> list[dict]:
    """The seed's `conversation` format, answers boxed."""
    return [{"conversation": conversation(problem, BOXED_STYLE)} for problem in problems]


def heldout_rows(problems: list[Problem]) -> list[dict]:
    return [{"prompt": problem.question, "reference": str(problem.result)} for problem in problems]


def clean_sample_rows(problems: list[Problem]) -> list[dict]:
    """The seed's `query`/`response` format, base-style answers."""
    return [{"query": problem.question, "response": problem.reply(BASE_STYLE)} for problem in problems]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_sample_files(samples_dir: Path, data: DemoData) -> dict[str, Path]:
    files = {
        "demo-train.jsonl": finetune_rows(data.finetune_set),
        "demo-heldout.jsonl": heldout_rows(data.heldout),
        "clean-sample.jsonl": clean_sample_rows(data.clean_sample),
    }
    paths = {}
    for name, rows in files.items():
        paths[name] = samples_dir / name
        write_jsonl(paths[name], rows)
    return paths
