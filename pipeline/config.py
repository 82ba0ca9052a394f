"""The one typed settings object.

Precedence, lowest first: defaults < TOML file (``pitfall.toml``) < ``PITFALL_*``
environment variables (nested with ``__``, e.g. ``PITFALL_DART__K_U=8``) < CLI
flags. Unknown keys are an error that names the key and where it came from.

``pitfall.toml`` at the repository root lists every setting with its default;
a test keeps it equal to the defaults below.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "PITFALL_"
# Environment variables the CLI reads itself (typer envvars), not settings keys.
CLI_ENV_VARS = frozenset({"PITFALL_STORE", "PITFALL_CONFIG"})
DEFAULT_CONFIG_FILE = Path("pitfall.toml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StoreSettings(Section):
    path: Path = Path("data/store/pitfall.duckdb")
    batch_rows: int = Field(
        245_760, gt=0, description="rows per committed insert batch (two DuckDB row groups)"
    )
    open_timeout_s: float = Field(
        30.0,
        ge=0,
        description="how long a reader or the writer retries while the other holds the file",
    )


class ProblemsSettings(Section):
    max_problem_chars: int = Field(20_000, gt=0, description="longer problems are quarantined")
    max_answer_chars: int = Field(1_000, gt=0, description="longer gold answers are quarantined")


class TeacherSettings(Section):
    backend: Literal["vllm", "openai", "transformers"] = "vllm"
    model: str = "data/models/toy-teacher"
    template: Literal["chat", "boxed", "raw"] = Field(
        "chat",
        description="chat: the model's chat template; boxed: plus the step-by-step boxed instruction",
    )
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, gt=0)
    seed: int = Field(
        0, description="base seed; request seeds derive from it, the problem and the sample index"
    )
    replicas: int = Field(
        1,
        ge=1,
        description="vllm/transformers: copies of the model in worker processes, each on its"
        " own share of the CPU cores (or its own GPU); a tiny model on a CPU samples faster"
        " with one per core",
    )
    # vllm
    gpu_memory_utilization: float = Field(
        0.15,
        gt=0,
        le=1,
        description="share of (GPU or CPU) memory vLLM reserves; on the CPU the ceiling of a KV"
        " cache sized from the model",
    )
    max_model_len: int | None = Field(None, gt=0, description="default: the model's own limit")
    dtype: str = "auto"
    # openai-compatible server
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="name of the variable holding the key (never stored)"
    )
    endpoint: Literal["completions", "chat"] = "completions"
    concurrency: int = Field(8, gt=0, description="calls in flight at once")
    timeout_s: float = Field(
        300.0,
        gt=0,
        description="deadline of one call, its retries and their backoff included; a server"
        " silent for this long ends the stage",
    )
    retries: int = Field(
        3,
        ge=0,
        description="further attempts of a call that may still succeed (timeout, 408/409/429,"
        " 5xx, a malformed answer), with doubling backoff from 1 s",
    )
    # transformers
    batch_size: int = Field(32, gt=0)
    commit_every: int = Field(256, gt=0, description="requests per committed chunk of traces")


class VerifySettings(Section):
    timeout_s: float = Field(
        5.0,
        gt=0,
        description="CPU seconds one check may use (from when its worker begins it); over it,"
        " one retry on a fresh worker, then a timeout verdict",
    )
    workers: int = Field(2, gt=0)
    fallback: Literal["last_number", "none"] = Field(
        "last_number", description="when there is no boxed answer or 'answer is' phrase"
    )
    commit_every: int = Field(2000, gt=0, description="verdicts per committed batch")


class DartSettings(Section):
    # Toy-scale defaults, so the embedded default run ends in minutes on a laptop;
    # DART-Math's released values are k_u = 40, k_p = 192, n_max = 2048.
    strategy: Literal["fixed", "uniform", "prop2diff"] = "uniform"
    k_u: int = Field(4, gt=0, description="uniform: correct answers wanted per problem")
    k_p: int = Field(16, gt=0, description="prop2diff: correct answers for the hardest problem")
    n_fixed: int = Field(8, gt=0, description="fixed: trials per problem")
    n_max: int = Field(64, gt=0, description="trial cap per problem")
    round_size: int = Field(8, gt=0, description="samples per problem per round")
    warmup_n: int = Field(
        8, gt=0, description="prop2diff: trials per problem before difficulty is measured"
    )
    max_rounds: int = Field(
        1000, gt=0, description="rounds per problem, even if its target is not met"
    )


class SegmentSettings(Section):
    mode: Literal["blank", "markers"] = Field(
        "blank", description="blank: paragraphs between blank lines; markers: 'Step k:' lines"
    )
    min_chars: int = Field(10, ge=0, description="shorter fragments join their neighbour")
    max_steps: int = Field(
        32, gt=0, description="longer traces are cut into this many pieces of similar length"
    )


def _registered(table: str, names: str | list[str] | None):
    """Names checked against a stage's registry (localization methods, pair kinds),
    imported when settings are validated: the registries import this module."""
    if names is None:
        return names
    import pipeline.stages.localize
    import pipeline.stages.negatives

    module, attr, what = {
        "methods": (pipeline.stages.localize, "METHODS", "localization method"),
        "kinds": (pipeline.stages.negatives, "KINDS", "pair kind"),
    }[table]
    known = getattr(module, attr)
    for name in [names] if isinstance(names, str) else names:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}; use {', '.join(known)}")
    return names


class LocalizeSettings(Section):
    method: str = Field("mc-binary", description="see `pitfall localize --help`")
    k: int = Field(8, gt=0, description="rollouts per probed prefix (OmegaPRM uses 8)")
    alive_threshold: int = Field(
        1, gt=0, description="a prefix is alive when this many of its k rollouts are correct"
    )
    per_problem: int = Field(
        4, ge=0, description="wrong traces localized per problem, first by sample index; 0: all"
    )
    admit: list[Literal["truncated", "no_answer"]] = Field(
        [],
        description="outcomes localized besides wrong (their full trace is probed like a "
        "prefix); by default only traces the verifier judged wrong",
    )
    # the rollout policy; unset: the teacher's backend, model and sampling settings
    backend: Literal["vllm", "openai", "transformers"] | None = None
    model: str | None = None
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, gt=0)
    seed: int = Field(0, description="base seed of rollout and critic requests")
    # judge (the LLM critic; unset model: the policy's)
    judge_model: str | None = None
    judge_n: int = Field(4, gt=0, description="critic samples per trace, majority vote")
    judge_max_tokens: int = Field(256, gt=0)
    judge_temperature: float = Field(0.7, ge=0)
    # prm
    prm_model: str | None = None
    prm_separator: str = Field(
        "<extra_0>", description="token between steps (Qwen2.5-Math-PRM: <extra_0>)"
    )
    prm_threshold: float = Field(0.5, gt=0, lt=1)
    prm_trust_remote_code: bool = Field(
        False, description="run the PRM checkpoint's own modeling code (Qwen2.5-Math-PRM needs it)"
    )
    # consensus
    consensus: list[str] = Field(
        ["mc-binary", "judge"], min_length=2, max_length=2, description="the two methods"
    )

    _methods = field_validator("method", "consensus")(lambda v: _registered("methods", v))


class NegativesSettings(Section):
    kinds: list[str] = Field(["outcome", "step"], description="see `pitfall negatives --help`")
    pairs_per_problem: int = Field(
        1, gt=0, description="outcome: 1 = REDI's first correct vs first incorrect"
    )
    method: str | None = Field(
        None, description="whose first errors step / first-pit pairs use; unset: [localize] method"
    )
    best_of: int = Field(
        5,
        gt=0,
        description="first-pit / stepwise: V_i is the success of best-of-K continuations "
        "(Setlur et al.: K = 5), estimated from the prefix's rollouts",
    )

    _kinds = field_validator("kinds")(lambda v: _registered("kinds", v))
    _method = field_validator("method")(lambda v: _registered("methods", v))


class ReweightSettings(Section):
    select: Literal["all", "uniform", "prop2diff", "first"] = Field(
        "all",
        description="correct traces kept per problem: all, k_u, the prop2diff target, "
        "or the first (REDI's SFT set)",
    )
    weight: Literal["none", "fail_rate"] = Field(
        "none", description="fail_rate: weights grow with the problem's fail rate, mean 1"
    )
    weight_floor: float = Field(
        0.1, ge=0, description="fail_rate: added to every fail rate so easy problems keep some"
    )
    per: Literal["setup", "teacher"] = Field(
        "setup",
        description="fail rates and ranks per sampling setup (teacher + sampling parameters) "
        "or per teacher (pooling its setups)",
    )


class ExportSettings(Section):
    dir: Path = Path("data/export")
    hub_repo: str | None = None


class TrainSettings(Section):
    """`pitfall train`: one-shot offline fine-tunes on an export. Unset values
    take the trainer's own default (TRL's SFTConfig / DPOConfig, REDIConfig)."""

    model: str = Field("data/models/toy-student", description="base model: a folder or a Hub id")
    out_dir: Path = Field(
        Path("data/checkpoints"), description="checkpoints go to OUT_DIR/KIND unless --out says"
    )
    learning_rate: float | None = Field(
        None, gt=0, description="unset: SFT 2e-5, DPO 1e-6 (TRL), REDI 1e-6 (paper)"
    )
    epochs: float | None = Field(None, gt=0, description="unset: SFT/DPO 3 (TRL), REDI 1 (paper)")
    max_steps: int = Field(
        -1, description="stop after this many optimizer steps; -1: epochs decide"
    )
    batch_size: int = Field(8, gt=0, description="per device")
    grad_accum: int = Field(1, gt=0, description="gradient accumulation steps")
    max_length: int | None = Field(1024, gt=0, description="tokens per sequence; unset: no limit")
    truncation: Literal["keep_start", "keep_end"] = "keep_start"
    seed: int = 0
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    logging_steps: int = Field(10, gt=0)
    save_strategy: Literal["no", "steps", "epoch"] = Field(
        "no", description="intermediate checkpoints; the final model is always saved"
    )
    save_steps: int = Field(500, gt=0)
    beta: float | None = Field(None, gt=0, description="DPO's beta; unset: TRL's 0.1")
    alpha_chosen: float | None = Field(None, ge=0, description="REDI; unset: 1.0")
    alpha_rejected: float | None = Field(None, ge=0, description="REDI; unset: 0.8 (paper)")
    # GPUs
    bf16: bool = False
    gradient_checkpointing: bool = False
    lora: bool = Field(False, description="train a LoRA adapter (peft, extra `lora`)")
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    report_to: list[str] = Field(["none"], description="none, wandb, tensorboard, ...")


class EvalSettings(Section):
    """`pitfall eval`: pass@k of a model on a problem set, sampled through the
    teacher's backend and its engine settings, verified like every trace."""

    problems: str = Field(
        "data/toy/test.jsonl", description="a problem file, or a source already in the store"
    )
    level_column: str = Field("level", description="the problems' difficulty column, if any")
    n: int = Field(8, gt=0, description="samples per problem; pass@1 is their mean")
    k: list[int] = Field([1, 4, 8], description="pass@k reported for each k <= n")
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, gt=0)
    seed: int = 0
    template: Literal["chat", "boxed", "raw"] = "chat"

    @field_validator("k")
    @classmethod
    def _positive(cls, k: list[int]) -> list[int]:
        if not k or any(v < 1 for v in k):
            raise ValueError("k values must be positive integers")
        return sorted(set(k))


# the stages a run can take, in order (pipeline/stages/ has one module each);
# verify runs inside sample, and on its own when sample is not chosen
STAGES = (
    "ingest",
    "sample",
    "verify",
    "segment",
    "localize",
    "negatives",
    "reweight",
    "export",
)


class RunSettings(Section):
    """What `pitfall run` does: the curate flow over these inputs and stages."""

    inputs: list[str] = Field(
        ["data/toy/curate.jsonl"],
        description="problem files ingested at the start of every run"
        " (default: 300 toy train problems; the test split is left to pitfall eval)",
    )
    preset: str | None = Field(None, description="column preset for the inputs (math, gsm8k, ...)")
    stages: list[Literal[STAGES]] = [s for s in STAGES if s != "verify"]  # type: ignore[valid-type]
    on_locked: Literal["wait", "exit"] = Field(
        "wait", description="when another run holds the store: wait for it, or exit (code 3)"
    )
    lock_wait_s: float = Field(3600.0, ge=0, description="wait: give up after this long")
    ray: str | None = Field(
        None, description="run verification and sampling shards on Ray: auto or an address"
    )
    prefect_start_timeout_s: float = Field(
        600.0,
        gt=0,
        description="how long to wait for the local Prefect API server (its first start migrates"
        " its database; unused when PREFECT_API_URL is set)",
    )


class ConfigError(ValueError):
    """A settings file or variable that cannot be used; the message says where."""


class _EnvSource(EnvSettingsSource):
    """``PITFALL_*`` variables, minus the ones the CLI reads itself."""

    def _load_env_vars(self):  # type: ignore[override]
        env = super()._load_env_vars()
        return {k: v for k, v in env.items() if k.upper() not in CLI_ENV_VARS}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    config_file: Path | None = Field(None, description="where the TOML layer came from")
    store: StoreSettings = StoreSettings()
    problems: ProblemsSettings = ProblemsSettings()
    teacher: TeacherSettings = TeacherSettings()
    verify: VerifySettings = VerifySettings()
    dart: DartSettings = DartSettings()
    segment: SegmentSettings = SegmentSettings()
    localize: LocalizeSettings = LocalizeSettings()
    negatives: NegativesSettings = NegativesSettings()
    reweight: ReweightSettings = ReweightSettings()
    run: RunSettings = RunSettings()
    export: ExportSettings = ExportSettings()
    train: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        config_file = init_settings.init_kwargs.get("config_file")  # type: ignore[attr-defined]
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(
    config_file: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the settings from a TOML file, the environment and ``overrides``
    (nested dicts, CLI level). With no file given, ``./pitfall.toml`` is used
    when it exists."""
    if config_file is None and DEFAULT_CONFIG_FILE.is_file():
        config_file = DEFAULT_CONFIG_FILE
    file_data: dict[str, Any] = {}
    if config_file is not None:
        config_file = Path(config_file)
        if not config_file.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        try:
            file_data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from exc
    try:
        return Settings(config_file=config_file, **(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, config_file, file_data)) from exc


def _explain(exc: ValidationError, config_file: Path | None, file_data: dict) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        where = _origin(loc, config_file, file_data)
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}'")
        else:
            lines.append(f"{where}: '{key}': {err['msg']} (got {err.get('input')!r})")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _origin(loc: list[str], config_file: Path | None, file_data: dict) -> str:
    # checked in precedence order: the highest layer holding the key set its value
    env_name = ENV_PREFIX + "__".join(loc).upper()
    if env_name in os.environ:
        return f"environment variable {env_name}"
    node: Any = file_data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return "command-line flags"
        node = node[part]
    return str(config_file)


# ------------------------------------------------------------------ secrets

# user:password@ in a URL; the last @ before the path ends it, as URL parsers read it
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden: ``http://***@host:8000/v1``."""
    return _USERINFO.sub(rf"\g<1>{REDACTED}@", text)


def redacted_settings(settings: Settings, **dump: Any) -> dict:
    """The settings as JSON with credentials in URLs hidden: what ``runs.config``,
    Prefect flow and deployment parameters and every message get."""
    return _redact_tree(settings.model_dump(mode="json", **dump))


def secret_env(settings: Settings) -> dict[str, str]:
    """``PITFALL_SECTION__KEY`` variables holding the values :func:`redacted_settings`
    hides, for the process that runs a flow given the redacted ones."""
    found = {}
    for path, value in _leaves(settings.model_dump(mode="json")):
        if _redact_tree(value) != value:
            found[ENV_PREFIX + "__".join(path).upper()] = (
                value if isinstance(value, str) else json.dumps(value)
            )
    return found


def flow_settings(config_file: Path | str | None, overrides: dict | None) -> Settings:
    """:func:`load_settings` for flow parameters made by :func:`redacted_settings`: a
    redacted value counts as not given, so the environment (:func:`secret_env`) or
    the file supplies it, and it must be the same value with its credentials."""
    hidden = {p: v for p, v in _leaves(overrides or {}) if f"://{REDACTED}@" in json.dumps(v)}
    given = _without(overrides or {}, set(hidden))
    settings = load_settings(config_file, given)
    resolved = dict(_leaves(settings.model_dump(mode="json")))
    for path, shown in hidden.items():
        actual = resolved.get(path)
        if actual == shown or _redact_tree(actual) != shown:
            name = ENV_PREFIX + "__".join(path).upper()
            raise ConfigError(
                f"'{'.'.join(path)}' reaches the flow redacted ({shown}): set {name} to the"
                " value with its credentials in the environment the flow runs in"
            )
    return settings


def _redact_tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_tree(v) for k, v in value.items()}
    return value


def _leaves(tree: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _without(tree: dict, paths: set[tuple[str, ...]], path: tuple[str, ...] = ()) -> dict:
    return {
        k: _without(v, paths, (*path, k)) if isinstance(v, dict) else v
        for k, v in tree.items()
        if (*path, k) not in paths
    }
