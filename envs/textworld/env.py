"""TextWorld games as AgentEnv environments: custom quests (w, o, q knobs), the simple challenge, cooking."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from agentenv.core import TextEnv, split_of
from agentenv.envs.textworld.games import Game, GameSpec, build, quiet_engine, require_textworld
from agentenv.errors import check_choice, check_range
from agentenv.rewards import REWARD_MODES, ProgressReward

_ENGINE_MAX_INPUT = 190  # the Z-machine's input buffer; jericho cuts longer commands
_PROMPT = re.compile(r"\n\s*>")
_ROOM = re.compile(r"-= (.+?) =-")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
_COMMAND_GRAMMAR = (
    "Commands (one per turn): look, inventory, go north|south|east|west, examine <thing>, take <object>, "
    "take <object> from <container or supporter>, put <object> on <supporter>, insert <object> into <container>, "
    "open|close <container or door>, unlock|lock <door or container> with <key>, drop <object>, eat <food>"
)


class TextWorldGameEnv(TextEnv):
    """Plays one TextWorld game per task seed; subclasses say which game (``kind`` and ``game_knobs``).

    Observations follow the seed paper: the room the agent is in, the game's feedback, and the inventory; the
    first one starts with the goal. A turn is invalid when its command is not one of the game's admissible
    commands (the game still answers it, so the agent reads the parser's own complaint). Rewards come from the
    game's score: progress = score / max_score. ``optimal_steps`` is the length of TextWorld's own walkthrough of
    the game (in the cooking games it checks the inventory and reads the cookbook first, which score nothing).
    """

    family = "textworld"
    hack_module = "agentenv.envs.textworld.hacks"
    reward_modes = REWARD_MODES
    kind: ClassVar[str] = ""
    grammar: ClassVar[str] = _COMMAND_GRAMMAR

    def __init__(self, *, admissible_hint: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.admissible_hint = bool(admissible_hint)
        self.instructions = (
            "You are playing a text adventure game. The first message gives your goal; each later message "
            f"tells you where you are, what happened and what you carry.\n{self.grammar}."
        )
        self._rewarder = ProgressReward(self.reward_mode)
        self._engine: Any = None
        self._engine_path: str | None = None
        self._game: Game | None = None
        self._state: Any = None
        self._sent: list[str] = []  # commands the engine executed this episode, for replay after an engine error
        self._room = ""

    def game_knobs(self, task_seed: int) -> dict[str, Any]:
        raise NotImplementedError

    # ---- TextEnv hooks --------------------------------------------------------------------------------
    def prepare_task(self, task_seed: int) -> None:
        self._game_for(task_seed)

    def _game_for(self, task_seed: int) -> Game:
        return build(GameSpec.of(self.kind, self.game_knobs(task_seed), task_seed))

    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._game = self._game_for(task_seed)
        self._start_engine(str(self._game.path))
        with quiet_engine():
            self._state = self._engine.reset()
        self._sent = []
        self._rewarder.reset()
        feedback = self._state.feedback
        start = feedback.find("-= ")  # the first feedback is banner + goal + room; keep the room
        self._room = _room_of(feedback) or ""
        room_text = _clean(feedback[start:] if start >= 0 else feedback)
        observation = f"Goal: {self._state.objective.strip()}\n\n{self._view(room_text)}"
        info = {"optimal_steps": len(self._game.walkthrough), "max_score": self._state.max_score}
        return observation, info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:  # type: ignore[override]
        command = normalize_command(action)
        invalid = command not in {normalize_command(c) for c in self._state.admissible_commands}
        for_engine = _engine_safe(command)
        if not for_engine:
            return self._finish("I did not understand that.", invalid=True)
        if len(for_engine) > _ENGINE_MAX_INPUT:
            return self._finish("That command is too long for the game.", invalid=True)
        state = self._engine_step(for_engine)
        if state is None:
            return self._finish("The game could not process that command; nothing happened.", invalid=True)
        self._state = state
        self._room = _room_of(state.feedback) or self._room
        return self._finish(_clean(state.feedback), invalid=invalid)

    def _step_invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        return self._finish(f"Invalid action: {reason}.", invalid=True)

    # ---- engine -------------------------------------------------------------------------------------------
    def _start_engine(self, path: str) -> None:
        if self._engine is not None and self._engine_path == path:
            return
        textworld = require_textworld()
        self._close_engine()
        infos = textworld.EnvInfos(
            feedback=True, objective=True, inventory=True, score=True, max_score=True, won=True, lost=True,
            admissible_commands=True, policy_commands=True,
        )  # fmt: skip
        with quiet_engine():
            self._engine, self._engine_path = textworld.start(path, infos), path

    def _engine_step(self, command: str) -> Any:
        """One engine step; if the engine fails, restart it and replay the episode so far, and return None."""
        try:
            state, _, _ = self._engine.step(command)
        except Exception:
            path = self._engine_path
            self._close_engine()
            self._start_engine(str(path))
            with quiet_engine():
                self._engine.reset()
            for previous in self._sent:
                self._engine.step(previous)
            return None
        self._sent.append(command)
        return state

    def _close_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._engine_path = None, None

    def close(self) -> None:
        self._close_engine()
        super().close()

    # ---- pickling ---------------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything but the engine (a ctypes handle): the game, the commands sent so far, the counters."""
        state = self.__dict__.copy()
        state.update(_engine=None, _engine_path=None, _state=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Re-open the same game file and replay the commands the engine ran this episode, so the copy is in the
        same game state (room, inventory, score, turn count) as the original when it was pickled."""
        self.__dict__.update(state)
        if self._game is None or not self._started:
            return
        self._start_engine(str(self._game.path))
        with quiet_engine():
            self._state = self._engine.reset()
            for command in self._sent:
                self._state, _, _ = self._engine.step(command)

    # ---- observations and rewards -----------------------------------------------------------------------
    def _finish(self, feedback: str, *, invalid: bool) -> tuple[str, float, bool, dict[str, Any]]:
        state = self._state
        won, lost = bool(state.won), bool(state.lost)
        max_score = max(1, int(state.max_score))
        progress = min(1.0, max(0.0, state.score / max_score))
        reward = self._rewarder(progress, success=won, last_turn=lost or self.turns_left == 0)
        info = {
            "success": won,
            "lost": lost,
            "invalid_action": invalid,
            "progress": progress,
            "score": int(state.score),
            "max_score": int(state.max_score),
            "reward_parts": {self.reward_mode: reward},
        }
        observation = feedback if (won or lost) else self._view(feedback)
        return observation, reward, won or lost, info

    def _view(self, feedback: str) -> str:
        lines = [f"You are now in the {self._room}." if self._room else "", feedback, self._state.inventory.strip()]
        if self.admissible_hint:
            lines.append("Admissible commands: " + ", ".join(self._state.admissible_commands) + ".")
        return "\n".join(line for line in lines if line)

    # ---- planning -------------------------------------------------------------------------------------
    def walkthrough(self) -> list[str] | None:
        """The rest of the game's walkthrough (TextWorld's own, as ``tw-play`` plays it) while the episode has
        followed it, else the policy TextWorld plans from the current state."""
        if self._state is None or self._state.won or self._state.lost:
            return None
        planned = self._game.walkthrough if self._game is not None else ()
        done = len(self._sent)
        if done < len(planned) and [_engine_safe(normalize_command(c)) for c in planned[:done]] == self._sent:
            return list(planned[done:])
        return list(self._state.policy_commands)

    def admissible_commands(self) -> list[str] | None:
        return None if self._state is None else list(self._state.admissible_commands)


class TextWorldEnv(TextWorldGameEnv):
    """A custom TextWorld quest: ``world_size`` rooms, ``nb_objects`` objects, a quest of ``quest_length`` steps.

    These are the seed paper's complexity knobs (w, o, q). Custom quests score only on completion
    (``max_score`` 1), so their dense reward equals the sparse one; use the simple challenge to vary density.
    """

    kind = "custom"

    def __init__(self, *, world_size: int = 2, nb_objects: int = 3, quest_length: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        check_range("world_size", world_size, 1, 20, integer=True)
        check_range("nb_objects", nb_objects, 1, 40, integer=True)
        check_range("quest_length", quest_length, 1, 20, integer=True)
        self.world_size, self.nb_objects, self.quest_length = world_size, nb_objects, quest_length

    @property
    def task_tag(self) -> str:
        return f"tw-w{self.world_size}o{self.nb_objects}q{self.quest_length}"

    def game_knobs(self, task_seed: int) -> dict[str, Any]:
        return {"world_size": self.world_size, "nb_objects": self.nb_objects, "quest_length": self.quest_length}


class TextWorldSimpleEnv(TextWorldGameEnv):
    """TextWorld's "simple" challenge: fixed house, find food and put it on the stove.

    ``rewards`` sets how often the game scores (dense: every useful step, balanced: subgoals, sparse: only the
    end); ``goal`` how much the first message says (detailed walkthrough, brief hint, none). This is the seed
    paper's reward-density family.
    """

    kind = "simple"

    def __init__(self, *, rewards: str = "dense", goal: str = "detailed", **kwargs: Any):
        super().__init__(**kwargs)
        check_choice("rewards", rewards, ("dense", "balanced", "sparse"))
        check_choice("goal", goal, ("detailed", "brief", "none"))
        self.rewards, self.goal = rewards, goal

    @property
    def task_tag(self) -> str:
        return f"tw-simple-{self.rewards}-{self.goal}"

    def game_knobs(self, task_seed: int) -> dict[str, Any]:
        return {"rewards": self.rewards, "goal": self.goal, "split": split_of(task_seed)}


class TextWorldCookingEnv(TextWorldGameEnv):
    """TextWorld's cooking challenge (the First TextWorld Problems games): read the cookbook, cook a meal.

    Knobs follow ``tw-make tw-cooking``: ``recipe`` ingredients, ``take`` of them to find, ``go`` rooms (1, 6, 9
    or 12), and whether containers must be ``open``-ed, ingredients ``cook``-ed or ``cut``, and the inventory is
    limited (``drop``). The food vocabulary follows the task's split (train / valid / test foods).
    """

    kind = "cooking"
    grammar = _COMMAND_GRAMMAR + (
        ", read|examine cookbook, cook <food> with <oven|stove|BBQ>, chop|slice|dice <food> with <knife>, "
        "prepare meal, eat meal"
    )

    def __init__(
        self,
        *,
        recipe: int = 1,
        take: int = 1,
        go: int = 1,
        open: bool = False,
        cook: bool = False,
        cut: bool = False,
        drop: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        check_range("recipe", recipe, 1, 5, integer=True)
        check_range("take", take, 0, recipe, integer=True)
        check_choice("go", go, (1, 6, 9, 12))
        self.recipe, self.take, self.go = recipe, take, go
        self.open, self.cook, self.cut, self.drop = bool(open), bool(cook), bool(cut), bool(drop)

    @property
    def task_tag(self) -> str:
        flags = "".join(c for c, on in zip("ockd", (self.open, self.cook, self.cut, self.drop), strict=True) if on)
        return f"tw-cooking-r{self.recipe}t{self.take}g{self.go}{flags}"

    def game_knobs(self, task_seed: int) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "take": self.take, "go": self.go, "open": self.open, "cook": self.cook,
            "cut": self.cut, "drop": self.drop, "split": split_of(task_seed),
        }  # fmt: skip


def normalize_command(text: str) -> str:
    """How TextWorld lists admissible commands: lower case, single spaces, no trailing full stop."""
    return " ".join(text.strip().rstrip(".!").lower().split())


def _engine_safe(command: str) -> str:
    # The Z-machine reads ASCII; a backslash makes dfrotz print escape errors.
    return "".join(c for c in command if " " <= c <= "~" and c != "\\").strip()


def _room_of(feedback: str) -> str | None:
    match = _ROOM.findall(feedback)
    return match[-1] if match else None


def _clean(feedback: str) -> str:
    text = _PROMPT.split(feedback)[0].split("*** The End ***")[0]
    text = _ROOM.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
