"""RL Zoo entries read as they are: translation, SB3 defaults, safe parsing, and what is reported."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from ftg_common.config import PPOConfig
from ftg_common.zoo import (
    NEW_KEYS,
    TorchName,
    ZooError,
    load_zoo_entry,
    load_zoo_file,
    parse_python_literal,
    translate,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "zoo"
PPO_YML = DATA / "ppo.yml"

NORM = {"norm_obs": True, "norm_reward": True, "clip_obs": 10.0, "clip_reward": 10.0, "epsilon": 1e-8}

# Every translated key of the five classic-control entries, written out by hand: the entry's value where
# it has one, SB3's default where it is silent (n_envs 1, n_steps 2048, batch 64, lr 3e-4 constant, ...).
EXPECTED = {
    "CartPole-v1": {
        "n_envs": 8,
        "total_steps": 100_000,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": 0.001,
        "lr_schedule": "linear",
        "clip_range": 0.2,
        "clip_schedule": "linear",
        "normalize": None,
        "use_sde": False,
        "sde_sample_freq": -1,
        "shards": 2,
        "threshold": 475.0,
    },
    "Acrobot-v1": {
        "n_envs": 16,
        "total_steps": 1_000_000,
        "n_steps": 256,
        "batch_size": 64,
        "gae_lambda": 0.94,
        "gamma": 0.99,
        "n_epochs": 4,
        "learning_rate": 3e-4,
        "lr_schedule": "constant",
        "clip_range": 0.2,
        "clip_schedule": "constant",
        "normalize": {**NORM, "gamma": 0.99},
        "threshold": -100.0,
    },
    "MountainCar-v0": {
        "n_envs": 16,
        "total_steps": 1_000_000,
        "n_steps": 16,
        "batch_size": 64,
        "gae_lambda": 0.98,
        "gamma": 0.99,
        "n_epochs": 4,
        "normalize": {**NORM, "gamma": 0.99},
        "threshold": -110.0,
    },
    "MountainCarContinuous-v0": {
        "n_envs": 1,
        "shards": 1,
        "total_steps": 20_000,
        "n_steps": 8,
        "batch_size": 8,  # 256 > one rollout of 8: SB3 takes the rollout as one minibatch
        "gamma": 0.9999,
        "learning_rate": 7.77e-05,
        "lr_schedule": "constant",
        "ent_coef": 0.00429,
        "clip_range": 0.1,
        "n_epochs": 10,
        "gae_lambda": 0.9,
        "max_grad_norm": 5.0,
        "vf_coef": 0.19,
        "use_sde": True,
        "sde_sample_freq": -1,
        "log_std_init": -3.29,
        "ortho_init": False,
        "net_arch": [64, 64],
        "activation": "tanh",
        "normalize": {**NORM, "gamma": 0.9999},  # the Zoo passes the entry's gamma to VecNormalize
        "threshold": 90.0,
    },
    "Pendulum-v1": {
        "n_envs": 4,
        "total_steps": 100_000,
        "n_steps": 1024,
        "batch_size": 64,
        "gae_lambda": 0.95,
        "gamma": 0.9,
        "n_epochs": 10,
        "learning_rate": 1e-3,
        "lr_schedule": "constant",
        "clip_range": 0.2,
        "clip_schedule": "constant",
        "use_sde": True,
        "sde_sample_freq": 4,
        "normalize": None,  # the Zoo's PPO entry for Pendulum does not normalise (its A2C entry does)
        "log_std_init": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "adam_eps": 1e-5,
        "threshold": None,
    },
}


@pytest.mark.parametrize("env_id", sorted(EXPECTED))
def test_classic_control_entries(env_id: str) -> None:
    entry = load_zoo_entry(PPO_YML, env_id)
    for key, value in EXPECTED[env_id].items():
        assert entry.config[key] == value, key
    assert entry.unhonoured == ()
    assert entry.env_id == env_id and entry.config["env_id"] == env_id
    # Ready for PPOConfig as it is.
    cfg = PPOConfig(**entry.ppo_kwargs())
    assert cfg.total_steps == EXPECTED[env_id]["total_steps"]
    assert set(entry.config) <= set(PPOConfig.model_fields) and set(entry.config) >= NEW_KEYS


def test_batch_size_cap_is_reported() -> None:
    entry = load_zoo_entry(PPO_YML, "MountainCarContinuous-v0")
    assert len(entry.adjustments) == 1 and "batch_size 256 exceeds one rollout" in entry.adjustments[0]


def test_hyperparams_are_kept_as_written() -> None:
    entry = load_zoo_entry(PPO_YML, "CartPole-v1")
    assert entry.hyperparams["learning_rate"] == "lin_0.001"
    assert entry.hyperparams["n_timesteps"] == 1e5


def test_text_and_path_read_the_same() -> None:
    text = PPO_YML.read_text()
    assert load_zoo_entry(text, "Acrobot-v1").config == load_zoo_entry(str(PPO_YML), "Acrobot-v1").config


# --- other forms of the Zoo's file ------------------------------------------------------------------


def test_anchor_merge_and_multiline_policy_kwargs() -> None:
    walker = load_zoo_entry(DATA / "ppo_forms.yml", "Walker2DBulletEnv-v0")
    c = walker.config
    assert (c["net_arch"], c["activation"], c["ortho_init"], c["log_std_init"]) == (
        [256, 256],
        "relu",
        False,
        -2.0,
    )
    assert (c["clip_range"], c["clip_schedule"]) == (0.4, "linear")  # overrides the anchor's constant 0.4
    assert (c["use_sde"], c["sde_sample_freq"], c["n_envs"], c["batch_size"]) == (True, 4, 16, 128)
    assert walker.unhonoured == ()


def test_unsupported_features_are_reported_by_name() -> None:
    car = load_zoo_entry(DATA / "ppo_forms.yml", "CarRacing-v2")
    keys = {u.key for u in car.unhonoured}
    assert keys == {"env_wrapper", "frame_stack", "policy", "policy_kwargs.activation_fn"}
    gelu = next(u for u in car.unhonoured if u.key == "policy_kwargs.activation_fn")
    assert gelu.value == "nn.GELU" and "Tanh and nn.ReLU" in gelu.reason
    # The dict-string form of normalize: rewards only.
    assert car.config["normalize"]["norm_obs"] is False and car.config["normalize"]["norm_reward"] is True
    assert (car.config["learning_rate"], car.config["lr_schedule"]) == (1e-4, "linear")
    assert "frame_stack = 2: frame stacking" in str(next(u for u in car.unhonoured if u.key == "frame_stack"))


def test_entry_without_n_envs_uses_the_zoo_default() -> None:
    ant = load_zoo_entry(DATA / "ppo_forms.yml", "Ant-v4")
    assert (ant.config["n_envs"], ant.config["shards"], ant.config["n_steps"]) == (1, 1, 2048)


def test_unknown_keys_are_reported() -> None:
    entry = load_zoo_entry(DATA / "ppo_hostile.yml", "unknown-keys")
    reported = {u.key: u for u in entry.unhonoured}
    assert set(reported) == {"sde_noise_scale", "policy_kwargs.features_dim", "normalize.norm_obs_keys"}
    assert "unknown key" in reported["sde_noise_scale"].reason
    # Everything else of the entry is still honoured.
    c = entry.config
    assert (c["activation"], c["learning_rate"], c["lr_schedule"]) == ("relu", 3e-4, "linear")
    assert c["normalize"]["norm_reward"] is False and c["normalize"]["clip_obs"] == 5.0


# --- refusing what is not data ----------------------------------------------------------------------


@pytest.fixture
def no_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)


@pytest.mark.parametrize(
    ("env_id", "key", "offending"),
    [
        ("shell-in-policy-kwargs", "policy_kwargs", "__import__('os').system('x')"),
        ("open-in-dict", "policy_kwargs", "open('f')"),
        ("shell-in-normalize", "normalize", "__import__('os').system('x')"),
        ("lambda-activation", "policy_kwargs", "lambda x: x"),
    ],
)
def test_hostile_strings_refused(no_eval: None, env_id: str, key: str, offending: str) -> None:
    with pytest.raises(ZooError) as err:
        load_zoo_entry(DATA / "ppo_hostile.yml", env_id)
    message = str(err.value)
    assert message.startswith(f"{key}: refused") and offending in message


@pytest.mark.parametrize(
    "text",
    [
        "nn.ReLU()",  # a call, even of a whitelisted name
        "nn.Module",  # not an activation
        "os.system",
        "RMSpropTFLike",  # a bare name
        "dict(**kw)",
        "dict([('a', 1)])",
        "{**a}",
        "[1] * 10**9",
        "'a' + 'b'",
        "x[0]",
        "f'{x}'",
        "(lambda: 0)()",
        "[x for x in ()]",
        "b'bytes'",
        "1j",
        "-'a'",
        "nn.ReLU.__class__",
        "().__class__.__bases__",
    ],
)
def test_parser_refuses_non_literals(no_eval: None, text: str) -> None:
    with pytest.raises(ZooError, match=r"^policy_kwargs: "):
        parse_python_literal(text, "policy_kwargs")


def test_parser_reads_literals(no_eval: None) -> None:
    text = (
        "dict(a=-2, b=+1.5, c=[64, 64], d=dict(pi=[8], vf=(8,)), e=th.nn.Tanh, f=None, g=True, h={'k': 'v'})"
    )
    assert parse_python_literal(text, "k") == {
        "a": -2,
        "b": 1.5,
        "c": [64, 64],
        "d": {"pi": [8], "vf": (8,)},
        "e": TorchName("nn", "Tanh"),
        "f": None,
        "g": True,
        "h": {"k": "v"},
    }
    assert parse_python_literal("torch.optim.Adam", "k") == TorchName("optim", "Adam")


def test_parser_limits() -> None:
    with pytest.raises(ZooError, match="nested too deeply|not a Python expression"):
        parse_python_literal("[" * 5000 + "]" * 5000, "policy_kwargs")
    with pytest.raises(ZooError, match="at most"):
        parse_python_literal("1" * 20_000, "policy_kwargs")
    with pytest.raises(ZooError, match="not a Python expression"):
        parse_python_literal("dict(a=", "policy_kwargs")


# --- value errors name the key --------------------------------------------------------------------


def _entry(**kw: object) -> dict[str, object]:
    return {"n_timesteps": 1e4, **kw}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(learning_rate="exp_0.1"), "learning_rate: unknown schedule 'exp_0.1'"),
        (_entry(clip_range="lin_abc"), "clip_range: 'lin_abc' has no number"),
        (_entry(n_steps=12.5), "n_steps: expected a whole number"),
        (_entry(use_sde="yes"), "use_sde: expected true or false"),
        (_entry(gamma=True), "gamma: expected a number"),
        ({"n_timesteps": "1e5"}, "write !!float 1e5"),
        ({"n_envs": 2}, "has no n_timesteps"),
        (_entry(policy_kwargs="[1, 2]"), "policy_kwargs: expected a dict"),
        (
            _entry(policy_kwargs="dict(activation_fn='relu')"),
            "policy_kwargs.activation_fn: expected an activation",
        ),
        (_entry(clip_range_vf=-1), "clip_range_vf: must be positive"),
        (_entry(policy_kwargs="dict(net_arch=dict(pi=[8], qf=[8]))"), "takes only pi and vf"),
    ],
)
def test_bad_values_name_their_key(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace("[", r"\[")):
        translate(entry, "CartPole-v1")


def test_missing_env_lists_the_entries() -> None:
    with pytest.raises(ZooError, match=r"'LunarLander-v3' has no entry .*Acrobot-v1, CartPole-v1"):
        load_zoo_entry(PPO_YML, "LunarLander-v3")


def test_unreadable_files() -> None:
    with pytest.raises(ZooError, match="cannot read RL Zoo file"):
        load_zoo_file(DATA / "missing.yml")
    with pytest.raises(ZooError, match="not valid YAML"):
        load_zoo_file("a: [1\nb: 2\n")
    with pytest.raises(ZooError, match="mapping of env ids"):
        load_zoo_file("- 1\n- 2\n")
    with pytest.raises(ZooError, match="python/object"):
        load_zoo_file("CartPole-v1: !!python/object/apply:os.system ['x']\n")


# --- translation details ----------------------------------------------------------------------------


def test_normalize_gamma_rule() -> None:
    # Without gamma in the entry, the dict's own gamma (or VecNormalize's 0.99) applies ...
    own = translate(_entry(normalize="dict(gamma=0.5, norm_reward=False)"), "CartPole-v1").config["normalize"]
    assert (own["gamma"], own["norm_reward"]) == (0.5, False)
    assert translate(_entry(normalize=True), "CartPole-v1").config["normalize"]["gamma"] == 0.99
    # ... with it, the Zoo overwrites the normalisation gamma with the algorithm's.
    zoo = translate(_entry(normalize={"gamma": 0.5}, gamma=0.95), "CartPole-v1").config["normalize"]
    assert zoo["gamma"] == 0.95


def test_normalize_kwargs_and_off() -> None:
    on = translate(_entry(normalize=True, normalize_kwargs="dict(clip_obs=5.0)"), "CartPole-v1")
    assert on.config["normalize"]["clip_obs"] == 5.0
    off = translate(_entry(normalize=False, normalize_kwargs={"clip_obs": 5.0}), "CartPole-v1")
    assert off.config["normalize"] is None
    assert [u.key for u in off.unhonoured] == ["normalize_kwargs"]
    frozen = translate(_entry(normalize="dict(training=False)"), "CartPole-v1")
    assert [u.key for u in frozen.unhonoured] == ["normalize.training"]


def test_clip_range_vf_forms() -> None:
    assert translate(_entry(clip_range_vf=0.3), "CartPole-v1").config["clip_range_vf"] == 0.3
    linear = translate(_entry(clip_range_vf="lin_0.3"), "CartPole-v1")
    assert linear.config["clip_range_vf"] is None and [u.key for u in linear.unhonoured] == ["clip_range_vf"]


def test_net_arch_forms() -> None:
    def arch(text: str) -> tuple[list[int], list[str], tuple[str, ...]]:
        e = translate(_entry(policy_kwargs=text), "CartPole-v1")
        return e.config["net_arch"], [u.key for u in e.unhonoured], e.adjustments

    assert arch("dict(net_arch=[32, 16])") == ([32, 16], [], ())
    assert arch("dict(net_arch=dict(pi=[8, 8], vf=[8, 8]))") == ([8, 8], [], ())
    legacy = arch("dict(net_arch=[dict(pi=[8], vf=[8])])")
    assert legacy[:2] == ([8], []) and "old form" in legacy[2][0]
    assert arch("dict(net_arch=dict(pi=[8], vf=[16]))")[:2] == ([8], ["policy_kwargs.net_arch"])
    assert arch("dict(net_arch=[64, dict(pi=[8], vf=[8])])")[:2] == ([64, 64], ["policy_kwargs.net_arch"])
    assert arch("dict(net_arch=[])")[:2] == ([64, 64], ["policy_kwargs.net_arch"])


def test_optimizer_keywords() -> None:
    e = translate(
        _entry(
            policy_kwargs="dict(optimizer_class=th.optim.Adam, "
            "optimizer_kwargs=dict(eps=1e-7, betas=(0.9, 0.99)))"
        ),
        "CartPole-v1",
    )
    assert e.config["adam_eps"] == 1e-7
    assert [u.key for u in e.unhonoured] == ["policy_kwargs.optimizer_kwargs.betas"]
    # Given optimizer_kwargs without eps, SB3 stops passing eps=1e-5 and Adam's own 1e-8 applies.
    plain = translate(_entry(policy_kwargs="dict(optimizer_kwargs=dict())"), "CartPole-v1")
    assert plain.config["adam_eps"] == 1e-8
    rms = translate(_entry(policy_kwargs="dict(optimizer_class=th.optim.RMSprop)"), "CartPole-v1")
    assert [u.key for u in rms.unhonoured] == ["policy_kwargs.optimizer_class"]


def test_sde_keywords() -> None:
    e = translate(
        _entry(use_sde=True, policy_kwargs="dict(full_std=False, use_expln=True, squash_output=True)"),
        "Pendulum-v1",
    )
    assert (e.config["sde_full_std"], e.config["sde_use_expln"]) == (False, True)
    assert [u.key for u in e.unhonoured] == ["policy_kwargs.squash_output"]
    idle = translate(_entry(sde_sample_freq=4), "Pendulum-v1")
    assert any("no effect without use_sde" in a for a in idle.adjustments)


def test_keys_without_effect_and_shards() -> None:
    e = translate(_entry(n_envs=16, verbose=1, device="cpu", seed=3), "CartPole-v1", shards=4)
    assert e.config["shards"] == 4
    assert [u.key for u in e.unhonoured] == ["seed"]
    assert len(e.adjustments) == 2
    with pytest.raises(ZooError, match=r"shards: 3 does not divide n_envs \(16\)"):
        translate(_entry(n_envs=16), "CartPole-v1", shards=3)


def test_normalize_options_build_the_normaliser_settings() -> None:
    from ftg_common.normalize import NormalizeSettings

    options = load_zoo_entry(PPO_YML, "MountainCarContinuous-v0").config["normalize"]
    settings = NormalizeSettings(**options)
    assert (settings.gamma, settings.clip_obs, settings.norm_reward) == (0.9999, 10.0, True)
