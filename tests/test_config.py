from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hedgewatch.service.config import load_config, parse_config
from hedgewatch.service.errors import ConfigError, SecretError
from tests.support import REPO

GOOD = """\
sources:
  - exchange: binanceusdm
    symbols: [btc, ETH]
index:
  name: HW
  constituents: [BTC, ETH]
redis:
  url: redis://:hunter2@127.0.0.1:6379/0
"""


def test_valid_config_and_defaults() -> None:
    cfg = parse_config(GOOD, "good.yaml", env={})
    assert cfg.sources[0].symbols == ("BTC", "ETH")
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == 9108
    assert cfg.oracle.max_age_s == 10 and cfg.oracle.exclude_band_ratio == 0.05
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.redis)
    assert cfg.redis.resolved_url() == "redis://:hunter2@127.0.0.1:6379/0"


def test_config_is_frozen() -> None:
    cfg = parse_config(GOOD, env={})
    with pytest.raises(Exception, match="frozen"):
        cfg.http.port = 1  # type: ignore[misc]


def test_env_overrides_are_typed() -> None:
    env = {"HEDGEWATCH__HTTP__PORT": "9200", "HEDGEWATCH__REDIS__PREFIX": "hw2", "OTHER": "x"}
    cfg = parse_config(GOOD, env=env)
    assert cfg.http.port == 9200 and cfg.redis.prefix == "hw2"


TELEGRAM = GOOD + "notify:\n  telegram:\n    chat_id: '1'\n"


def test_env_values_are_coerced_by_field_type_not_parsed_as_yaml() -> None:
    env = {"HEDGEWATCH__NOTIFY__TELEGRAM__CHAT_ID": "-1001234567890", "HEDGEWATCH__LOG_LEVEL": "debug",
           "HEDGEWATCH__RULES__EVAL_INTERVAL_S": "2.5", "HEDGEWATCH__RULES__FILES": '["builtin:default"]'}
    cfg = parse_config(TELEGRAM, env=env)
    assert cfg.notify.telegram is not None and cfg.notify.telegram.chat_id == "-1001234567890"
    assert cfg.rules.eval_interval_s == 2.5 and cfg.rules.files == ("builtin:default",)
    # a string field gets exactly the text given: no YAML booleans, numbers, nulls or unquoting
    for raw in ("yes", "123", "null", '"quoted"', "'single'", "a: b", "[x]", "~"):
        assert parse_config(GOOD, env={"HEDGEWATCH__REDIS__PREFIX": raw}).redis.prefix == raw


def test_env_secrets_are_kept_whole() -> None:
    token = '123:abc #not-a-comment": "still-the-token'
    url = "redis://:pw #x\": \"y@127.0.0.1:6379/0"
    cfg = parse_config(TELEGRAM, env={"HEDGEWATCH__NOTIFY__TELEGRAM__BOT_TOKEN": token,
                                      "HEDGEWATCH__REDIS__URL": url})
    assert cfg.notify.telegram is not None and cfg.notify.telegram.resolved_token() == token
    assert cfg.redis.resolved_url() == url


def test_env_errors_name_the_variable_never_the_value() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(GOOD, "good.yaml", env={"HEDGEWATCH__HTTP__PORT": "hunter2-secret",
                                             "HEDGEWATCH__INDEX__CONSTITUENTS": "BTC,hunter2"})
    text = str(ei.value)
    assert "HEDGEWATCH__HTTP__PORT: http.port:" in text and "HEDGEWATCH__INDEX__CONSTITUENTS" in text
    assert "JSON" in text and "hunter2" not in text and "good.yaml" not in text
    with pytest.raises(ConfigError, match="HEDGEWATCH__NO_SUCH: no_such: unknown setting"):
        parse_config(GOOD, env={"HEDGEWATCH__NO_SUCH": "1"})
    with pytest.raises(ConfigError, match=r"HEDGEWATCH__HTTP__PROT: http\.prot: unknown key"):
        parse_config(GOOD, env={"HEDGEWATCH__HTTP__PROT": "1"})


def test_env_override_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(GOOD, "good.yaml", env={"HEDGEWATCH__HTTP__PORT": "many"})
    assert "HEDGEWATCH__HTTP__PORT" in str(ei.value)


def test_every_error_with_file_line_and_field() -> None:
    text = GOOD.replace("    symbols: [btc, ETH]\n", "    symbols: [btc, ETH]\n    colour: red\n") + \
        "http:\n  port: lots\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "bad.yaml", env={})
    msgs = [str(p) for p in ei.value.problems]
    assert "bad.yaml:4:5: sources.0.colour: unknown key" in msgs
    assert any(m.startswith("bad.yaml:11:3: http.port:") and "integer" in m for m in msgs)


def test_bad_yaml_has_a_line() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("sources: [\n  - a\nindex: {", "broken.yaml", env={})
    (p,) = ei.value.problems
    assert p.file == "broken.yaml" and p.line is not None and "invalid YAML" in p.message


def test_constituent_without_a_source_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SOL"):
        parse_config(GOOD.replace("[BTC, ETH]", "[BTC, ETH, SOL]"), env={})


def test_missing_secret_file_names_setting_not_value(tmp_path: Path) -> None:
    cfg = parse_config(GOOD.replace("  url: redis://:hunter2@127.0.0.1:6379/0",
                                    f"  url_file: {tmp_path / 'nope'}"), env={})
    with pytest.raises(SecretError, match=r"redis\.url"):
        cfg.redis.resolved_url()
    (tmp_path / "pw").write_text("redis://:s3@127.0.0.1/0\n")
    cfg = parse_config(GOOD.replace("  url: redis://:hunter2@127.0.0.1:6379/0",
                                    f"  url_file: {tmp_path / 'pw'}"), env={})
    assert cfg.redis.resolved_url() == "redis://:s3@127.0.0.1/0"


def test_bundled_live_config_is_valid() -> None:
    cfg = load_config(None, env={})
    assert {s.exchange for s in cfg.sources} == {"binanceusdm", "bybit", "okx"}


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hedgewatch.service", "check", str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_check_command_ok_and_failures(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    r = _check(good)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(GOOD + "surprise: 1\n")
    r = _check(unknown)
    assert r.returncode == 1
    assert f"{unknown}:9:1: surprise: unknown key" in r.stderr

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(GOOD + "oracle:\n  max_age_s: soon\n")
    r = _check(wrong)
    assert r.returncode == 1 and f"{wrong}:10:3: oracle.max_age_s:" in r.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [\n")
    r = _check(broken)
    assert r.returncode == 1 and "invalid YAML" in r.stderr and str(broken) in r.stderr


def test_rule_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "hw.yaml"
    path.write_text(GOOD + "rules:\n  files: [builtin:default, mine.yaml, /abs/other.yaml]\n")
    cfg = load_config(path, env={})
    assert cfg.rules.files == ("builtin:default", str(tmp_path / "conf" / "mine.yaml"), "/abs/other.yaml")


def test_check_reports_rule_file_problems_with_position(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("groups:\n  - name: g\n    rules:\n      - name: r\n"
                                        "        expr: price > nosuchsignal\n")
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(GOOD + "rules:\n  files: [mine.yaml]\n")
    r = _check(cfg)
    assert r.returncode == 1
    assert f"{tmp_path / 'mine.yaml'}:5:" in r.stderr and "nosuchsignal" in r.stderr


def _cli(*args: str, cwd: Path = REPO, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd), **extra}
    return subprocess.run([sys.executable, "-m", "hedgewatch.service", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("extra", "where"), [
    ("log_level: verbose\n", ":9:1: log_level: not a log level"),
    ("portfolio:\n  holdings: {BTC: .nan}\n", ":10:14: portfolio.holdings.BTC: Input should be a finite number"),
    ("portfolio:\n  lot_size: 1e400\n", ":10:3: portfolio.lot_size: Input should be a finite number"),
    ("oracle:\n  max_age_s: 1e300\n", ":10:3: oracle.max_age_s: at most"),
    ("  stream_maxlen: 1e23\n", ":9:3: redis.stream_maxlen:"),
    ("  stream_maxlen: 100000000000\n", ":9:3: redis.stream_maxlen: Input should be less than or equal"),
])
def test_check_rejects_what_run_would(tmp_path: Path, extra: str, where: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + extra)
    r = _cli("check", str(bad))
    assert r.returncode == 1 and f"{bad}{where}" in r.stderr, r.stderr


def test_check_rejects_a_negative_market_cap(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("  constituents: [BTC, ETH]\n", "  constituents: [BTC, ETH]\n  weighting: cap\n"
                                "  market_caps: {BTC: 1.9e12, ETH: -5}\n"))
    r = _cli("check", str(bad))
    assert r.returncode == 1 and f"{bad}:8:30: index.market_caps.ETH: Input should be greater than 0" in r.stderr


def test_check_and_run_refuse_an_outbox_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + f"  outbox_dir: {tmp_path / 'plain' / 'outbox'}\n")
    for cmd in ("check", "run"):
        r = _cli("run", "-c", str(bad)) if cmd == "run" else _cli("check", str(bad))
        assert r.returncode == 1, r.stderr
        assert r.stderr == f"{bad}: redis.outbox_dir: {tmp_path / 'plain' / 'outbox'}: {tmp_path / 'plain'} " \
                           "is not a directory\n"
    creatable = tmp_path / "ok.yaml"
    creatable.write_text(GOOD + f"  outbox_dir: {tmp_path / 'new' / 'outbox'}\n")
    assert _cli("check", str(creatable)).returncode == 0


def test_check_refuses_a_secret_with_a_control_character(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("redis://:hunter2\x1b[2J@127.0.0.1:6379/0\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("  url: redis://:hunter2@127.0.0.1:6379/0", f"  url_file: {tmp_path / 'url'}"))
    r = _cli("check", str(bad))
    assert r.returncode == 1 and "redis.url contains a control character" in r.stderr
    assert "hunter2" not in r.stderr and r.stderr.count("\n") == 1
    missing = tmp_path / "missing.yaml"
    missing.write_text(GOOD.replace("  url: redis://:hunter2@127.0.0.1:6379/0", f"  url_file: {tmp_path / 'no'}"))
    r = _cli("check", str(missing))
    assert r.returncode == 1 and f"redis.url: cannot read secret file {tmp_path / 'no'}" in r.stderr
    inline = tmp_path / "inline.yaml"
    inline.write_text(GOOD.replace("hunter2@", 'hunter2\\u0007@').replace("url: redis", 'url: "redis') + '"')
    r = _cli("check", str(inline))
    assert r.returncode == 1 and "redis.url contains a control character" in r.stderr and "hunter2" not in r.stderr
    (tmp_path / "ok.yaml").write_text(GOOD + f"  outbox_dir: {tmp_path / 'out'}\n")
    r = _cli("check", str(tmp_path / "ok.yaml"), HEDGEWATCH__REDIS__URL="redis://:hunter2@h:port/0")
    assert r.returncode == 1 and "redis.url: not a Redis URL" in r.stderr and "hunter2" not in r.stderr
    tg = tmp_path / "tg.yaml"
    tg.write_text(GOOD + f"  outbox_dir: {tmp_path / 'out'}\nnotify:\n  telegram: {{chat_id: '-1', "
                  "bot_token: \"123:hunter2\\x01x\"}\n")
    r = _cli("check", str(tg))
    assert r.returncode == 1 and "notify.telegram.bot_token" in r.stderr and "hunter2" not in r.stderr


def test_check_without_argument_checks_the_bundled_config(tmp_path: Path) -> None:
    r = _cli("check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # the installed package's copy: hedgewatch/service/defaults/live.yaml in site-packages or the editable tree
    path, _, verdict = r.stdout.partition(": ")
    assert path.endswith("hedgewatch/service/defaults/live.yaml") and Path(path).is_file(), r.stdout
    assert verdict.startswith("ok"), r.stdout


def test_bundled_scenarios_and_rule_sets_by_name(tmp_path: Path) -> None:
    from hedgewatch.connectors.simulator import load_scenario
    from hedgewatch.rules import named_rule_file

    assert load_scenario("faults") == load_scenario(REPO / "connectors" / "simulator" / "scenarios" / "faults.yaml")
    assert named_rule_file("default") == "builtin:default"
    assert named_rule_file(str(tmp_path / "default")) == str(tmp_path / "default")
    r = _cli("rules", "test", "default", cwd=tmp_path)
    assert r.returncode == 0 and "passed" in r.stdout, r.stdout + r.stderr


# seven levels of anchors, each aliasing the one above nine times: ~700 bytes expanding to 9**7 (4.8 million)
# strings when built
BOMB = "".join(
    f"lol{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9 if n else [f'"{"lol" * 11}l"'] * 9) + "]\n"
    for n in range(7))


def test_an_alias_bomb_is_refused_quickly_with_file_and_line(tmp_path: Path) -> None:
    import time
    import tracemalloc

    from hedgewatch.rules.loader import load_rules
    from hedgewatch.rules.signals import SignalBook
    from hedgewatch.service.yamlfile import NODE_BUDGET

    assert 600 < len(BOMB) < 800
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(GOOD + BOMB)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as ei:
        load_config(cfg, env={})
    took = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert took < 0.5 and peak < 20_000_000, (took, peak)
    (p,) = ei.value.problems
    assert (p.file, p.line) == (str(cfg), 14) and f"aliases expand past {NODE_BUDGET} nodes" in p.message

    rules = tmp_path / "rules.yaml"
    labels = "".join(f"          {line}\n" for line in BOMB.splitlines())
    rules.write_text("groups:\n  - name: g\n    rules:\n      - name: r\n        expr: price > 1\n"
                     f"        labels:\n{labels}")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as ei:
        load_rules([str(rules)], SignalBook("HW"))
    assert time.perf_counter() - t0 < 0.5
    assert ei.value.problems[0].file == str(rules) and ei.value.problems[0].line == 12
    r = _cli("check", str(cfg))
    assert r.returncode == 1 and r.stderr.startswith(f"{cfg}:14:")

    # anchors and aliases well inside the budget (merge keys included) still work
    fine = tmp_path / "fine.yaml"
    fine.write_text(GOOD.replace("sources:\n  - exchange: binanceusdm\n",
                                 "sources:\n  - &venue\n    exchange: binanceusdm\n")
                    + "portfolio: {holdings: &h {BTC: 1}}\nrules: {levels: *h}\n")
    assert load_config(fine, env={}).rules.levels == {"BTC": 1}


def test_outbox_defaults_to_the_user_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert parse_config(GOOD, env={}).redis.outbox_dir == str(tmp_path / "xdg" / "hedgewatch" / "HW")
    renamed = GOOD.replace("  name: HW\n", "  name: my/idx\n")
    assert parse_config(renamed, env={}).redis.outbox_dir == str(tmp_path / "xdg" / "hedgewatch" / "my_idx")
    for xdg in ("", "relative/dir"):  # unset, or not absolute (the XDG spec says to ignore it)
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert parse_config(GOOD, env={}).redis.outbox_dir == str(
            tmp_path / "home" / ".local" / "state" / "hedgewatch" / "HW")
    assert parse_config(GOOD + "  outbox_dir: /srv/hw\n", env={}).redis.outbox_dir == "/srv/hw"
    assert parse_config(GOOD, env={"HEDGEWATCH__REDIS__OUTBOX_DIR": "/srv/env"}).redis.outbox_dir == "/srv/env"
