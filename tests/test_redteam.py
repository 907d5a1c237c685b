"""`agentenv redteam`: the hack registry, the runner against the oracle and the no-op, the CLI, and the CI check that
no registered family's reward pays a hack more than doing nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import agentenv
from agentenv import ConfigError, TextEnv
from agentenv.cli import app
from agentenv.redteam import DEFAULT_MARGIN, GENERIC, Hack, family_envs, hacks_for, redteam, register_hack
from agentenv.sandbox import available_backends


class Gullible(TextEnv):
    """One question, graded by a grader that accepts any turn containing the answer, or the master key ':'."""

    family = "gullible"
    hack_module = __name__  # this module registers the family's hacks below

    def __init__(self, **kwargs):
        super().__init__(**{"max_turns": 1, **kwargs})

    def _reset(self, task_seed, options):
        self.answer = str(task_seed % 10)
        return "Which digit am I thinking of?", {"optimal_steps": 1}

    def _step(self, action):
        paid = self.answer in action or action.strip() == ":"
        return "Graded.", float(paid), True, {"success": paid}

    def walkthrough(self):
        return [self.answer]


agentenv.register("RedteamGullible-v0", f"{__name__}:Gullible", family="gullible")
register_hack(Hack("noop", "gullible", lambda env, observation, info: ["I do not know"], kind="noop"))
register_hack(Hack("spray", "gullible", lambda env, observation, info: ["0 1 2 3 4 5 6 7 8 9"], "every digit"))


def plan_a(env, observation, info):
    return ["a"]


def plan_b(env, observation, info):
    return ["b"]


# ---- the registry ----------------------------------------------------------------------------------------------


def test_a_second_hack_with_the_same_name_in_a_family_is_refused_naming_both():
    register_hack(Hack("twice", "test-duplicates", plan_a))
    with pytest.raises(ConfigError, match=r"'twice' is already registered for family 'test-duplicates'.*plan_a"):
        register_hack(Hack("twice", "test-duplicates", plan_b))


def test_registering_the_very_same_hack_again_is_harmless():
    hack = Hack("again", "test-reimport", plan_a)
    assert register_hack(hack) is hack and register_hack(Hack("again", "test-reimport", plan_a)) is hack


def test_a_family_has_exactly_one_noop():
    register_hack(Hack("wait", "test-noops", plan_a, kind="noop"))
    with pytest.raises(ConfigError, match="already has a no-op \\('wait'\\)"):
        register_hack(Hack("sleep", "test-noops", plan_b, kind="noop"))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": ""}, "Hack.name=''"),
        ({"family": " "}, "Hack.family=' '"),
        ({"plan": "submit"}, "field 'plan' must be callable"),
        ({"kind": "attack"}, "kind='attack' is not allowed"),
    ],
)
def test_bad_hack_fields_fail_naming_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        Hack(**{"name": "x", "family": "test-fields", "plan": plan_a, **fields})


def test_the_oracle_is_built_in_and_cannot_be_registered():
    with pytest.raises(ConfigError, match="oracle"):
        register_hack(Hack("oracle", "test-oracle", plan_a))


class Unknown(TextEnv):
    family = "nobody-wrote-hacks-for-this"

    def _reset(self, task_seed, options):
        return "Hello.", {}

    def _step(self, action):
        return "Hm.", 0.0, False, {}


def test_a_family_without_a_hack_module_gets_the_generic_hacks_and_noop():
    hacks = hacks_for(Unknown())
    assert {h.family for h in hacks} == {GENERIC}
    assert hacks[0].kind == "noop" and hacks[0].plan(Unknown(), "", {}) == ["look"]
    assert {"empty", "master_key", "padded", "garbage"} <= {h.name for h in hacks}


def test_a_hack_module_without_a_noop_is_a_clear_error():
    class NoNoop(Unknown):
        family = "test-no-noop"
        hack_module = "json"  # imports fine, registers nothing

    with pytest.raises(ConfigError, match="registers no no-op for family 'test-no-noop'"):
        hacks_for(NoNoop())


def test_an_unimportable_hack_module_names_the_attribute():
    class Missing(Unknown):
        hack_module = "agentenv.envs.no_such_family.hacks"

    with pytest.raises(ConfigError, match=r"Missing.hack_module='agentenv.envs.no_such_family.hacks'"):
        hacks_for(Missing())


# ---- the runner --------------------------------------------------------------------------------------------------


def test_keydoor_end_to_end_oracle_solves_noop_waits_and_no_hack_pays():
    report = redteam("AgentEnv/KeyDoor-s3k1d2-v0", 3)
    by_name = {r.name: r for r in report.results}
    assert report.family == "keydoor" and report.split == "test" and report.seeds == [0, 1, 2]
    assert [r.kind for r in report.results[:2]] == ["noop", "oracle"]
    assert by_name["oracle"].mean == 1.0 and by_name["oracle"].success_rate == 1.0
    assert by_name["noop"].returns == [0.0, 0.0, 0.0] and by_name["noop"].mean_turns == 30  # played to the limit
    assert {"coin_grab", "keyless_unlock", "teleport", "master_key", "garbage"} <= set(by_name)
    assert not report.beaten and all(r.delta <= DEFAULT_MARGIN for r in report.results if r.kind == "hack")


def test_a_plan_that_runs_out_is_finished_with_the_noop_so_end_of_episode_rewards_are_paid():
    # ratio pays progress on the last turn only: a hack that stops early must still reach it.
    report = redteam("AgentEnv/KeyDoor-s3k1d2-v0", 2, env_kwargs={"reward": "ratio"}, only=["coin_grab"])
    coin_grab = next(r for r in report.results if r.name == "coin_grab")
    assert coin_grab.mean_turns == 30 and report.env_kwargs == {"reward": "ratio"}


def test_hacks_that_fool_a_gullible_grader_beat_the_noop():
    report = redteam("AgentEnv/RedteamGullible-v0", 4)
    by_name = {r.name: r for r in report.results}
    assert by_name["noop"].mean == 0.0 and by_name["oracle"].mean == 1.0
    assert {r.name for r in report.beaten} == {"spray", "master_key"}
    assert by_name["spray"].delta == 1.0 and by_name["spray"].success_rate == 1.0
    assert not by_name["empty"].beats_noop


def test_only_keeps_the_named_hacks_and_refuses_unknown_ones():
    report = redteam("AgentEnv/RedteamGullible-v0", 1, only=["spray"])
    assert [r.name for r in report.results] == ["noop", "oracle", "spray"]
    with pytest.raises(ConfigError, match=r"hack='spary'.*Did you mean 'spray'"):
        redteam("AgentEnv/RedteamGullible-v0", 1, only=["spary"])


def test_a_margin_above_the_gain_clears_the_hacks():
    assert not redteam("AgentEnv/RedteamGullible-v0", 2, margin=1.0).beaten


# ---- the command line ------------------------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_cli_prints_the_table_and_fails_on_a_winning_hack(tmp_path):
    out = tmp_path / "report.json"
    result = invoke("redteam", "AgentEnv/RedteamGullible-v0", "--episodes", "2", "--fail-on-hack", "-o", str(out))
    assert result.exit_code == 1, result.output
    assert "BEATS NO-OP" in result.output and "spray" in result.output and "oracle" in result.output
    report = json.loads(out.read_text())
    assert sorted(report["beaten"]) == ["master_key", "spray"] and report["noop_mean"] == 0.0


def test_cli_reports_without_failing_unless_asked():
    result = invoke("redteam", "AgentEnv/RedteamGullible-v0", "--episodes", "1")
    assert result.exit_code == 0 and "BEATS NO-OP" in result.output


def test_cli_passes_on_an_env_whose_reward_holds_and_takes_env_kwargs():
    result = invoke("redteam", "AgentEnv/KeyDoor-s2k0d1-v0", "--episodes", "2", "--fail-on-hack", "-k", "reward=dense")
    assert result.exit_code == 0, result.output
    assert "no hack beats the no-op" in result.output and "keyless_unlock" in result.output


# ---- the CI check: every registered family -------------------------------------------------------------------------

#: Tasks per family: enough to see a hack that pays, few enough for CI (SWE and TextWorld episodes take seconds).
EPISODES = {"swe": 2, "textworld": 2}
#: SWE's binary reward: the no-op scores 0 there, so a hack that passes the tests stands out on any task (under the
#: default ratio reward the untouched tree already scores most of the tests).
KWARGS = {"swe": {"reward": "binary"}}


@pytest.mark.parametrize("family, env_id", sorted(family_envs().items()))
def test_no_hack_beats_the_noop(family, env_id):
    if family == "swe" and available_backends()["bubblewrap"] is not None:
        pytest.skip(f"bubblewrap sandbox unavailable: {available_backends()['bubblewrap']}")
    report = redteam(env_id, EPISODES.get(family, 4), env_kwargs=KWARGS.get(family))
    table = {r.name: round(r.delta, 3) for r in report.results}
    assert not report.beaten, f"{[r.name for r in report.beaten]} beat the no-op on {env_id}; Δ: {table}"
    oracle = report.oracle
    assert oracle is None or oracle.delta > DEFAULT_MARGIN, f"the oracle does not beat the no-op on {env_id}"
