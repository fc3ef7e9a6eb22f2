"""``hotline-link``: run the service, manage the lab, check a config file."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import signal
import json
import os
import sys
import time
from pathlib import Path

from . import settings as settings_mod
from .lab import Lab, LabError


def _load(args, secrets: bool = True, *, load=settings_mod.load, **kw) -> settings_mod.Settings:
    """``load``: what this command reads. The service's commands read the service's sections;
    the sidecar adds its own; the lab commands and the config check read every section."""
    try:
        return load(args.config, secrets=secrets, **kw)
    except settings_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_demo(args) -> int:
    from . import components, demo

    s = _load(args, load=components.load, lab=True)
    lab = Lab(s, args.config)
    if not lab.descriptor_file.exists() or not all(lab.status().values()):
        print("the lab is not running: start it with `make run` (in another terminal) first",
              file=sys.stderr)
        return 1
    return demo.main(json.loads(lab.descriptor_file.read_text()), s.sidecar.token, args.pace,
                     args.json)


def cmd_check_config(args) -> int:
    from . import components

    try:
        s = components.load(args.file, secrets=not args.no_secrets)
    except settings_mod.ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    sections = ["service", "sidecar", *(["lab"] if s.lab is not None else [])]
    print(f"{args.file}: ok ({', '.join(s.hotlines)}; sections: {', '.join(sections)}; "
          f"layers: {' -> '.join(s.sources)})")
    if s.lab is not None:
        # Not an error: the test, chaos and bench lab files are configs with a [lab]. But in a
        # production file it is dead weight that the service and the sidecar never read.
        print(f"{args.file}: note: has a [lab] table: the test lab's section, read only by "
              "`hotline-link lab` and `run --lab`; a production config needs none")
    return 0


def print_lab(desc: dict, token_file: Path | None = None, out=sys.stdout) -> None:
    print("hotline-link lab is up", file=out)
    for hid, pbx in desc["pbx"].items():
        print(f"  PBX {hid:<6} SIP udp {pbx['sip']['host']}:{pbx['sip']['port']}   "
              f"ARI {pbx['ari']['url']} (app {pbx['ari']['app']})", file=out)
    print(f"  Redis      {desc['redis']['url']}", file=out)
    if desc["redis"].get("sentinels"):
        print(f"  Sentinel   master {desc['redis']['master_name']} via "
              f"{', '.join(desc['redis']['sentinels'])} (processes: "
              f"{', '.join(desc['redis']['processes'])})", file=out)
    print("  SIP accounts (register from 127.0.0.1; passwords in the descriptor):", file=out)
    for a in desc["accounts"]:
        dials = f", dials {a['dials']}" if a["dials"] else ""
        print(f"    {a['role']:<8} {a['uri']:<34} password {a['password']}{dials}", file=out)
    keys = "  ".join(f"{k}={v}" for k, v in desc["keys"].items())
    print(f"  agent keys: {keys}", file=out)
    for hid, targets in desc.get("target_keys", {}).items():
        listed = "  ".join(f"{k}={t}" for k, t in targets.items())
        print(f"  {hid} target keys: {listed}", file=out)
    services = desc.get("services", {})
    if "sidecar" in services:
        token = f"bearer token in {token_file}; " if token_file else ""
        print(f"  sidecar API {services['sidecar']} ({token}live events at /events)", file=out)
        print(f"  值班大屏 wallboard {services['sidecar'].rstrip('/')}/board "
              "(a supervisor's token, or the one above)", file=out)
        print(f"  坐席工作台 agent screen {services['sidecar'].rstrip('/')}/agent?agent=12345-a1 "
              "(a desktop token of the agent's centre, or the one above)", file=out)
        print("  演示 demo: `.venv/bin/hotline-link demo` in another terminal plays a transfer, a "
              "three-way call and an emergency with the lab's own phones", file=out)
    for name, url in services.items():
        if name.startswith("standin-"):
            print(f"  {name.removeprefix('standin-')} ticket system (stand-in) {url}", file=out)
    print(f"  descriptor: {desc['state_dir']}.json", file=out)


def cmd_lab(args) -> int:
    from . import components

    s = _load(args, secrets=False, load=components.load, lab=True)
    try:
        lab = Lab(s, args.config)
        if args.action == "up":
            print_lab(lab.up(), s.sidecar.token_file)
        elif args.action == "down":
            stopped = lab.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.action == "status":
            status = lab.status()
            if not status:
                print("lab is down")
                return 1
            for name, alive in status.items():
                print(f"{name}: {'running' if alive else 'DEAD'}")
            for core in lab.cores():
                print(f"core of a crashed PBX: {core} (hotline-link lab cores)")
            return 0 if all(status.values()) else 1
        elif args.action == "stop":
            print("stopped: " + lab.stop_one(args.name))
        elif args.action == "start":
            print("started: " + lab.start_one(args.name))
        elif args.action == "cli":
            print(lab.cli(args.pbx, " ".join(args.command)), end="")
        elif args.action == "cores":
            cores = lab.cores()
            for core in cores:
                print(f"{core}:\n{lab.backtrace(core)}\n")
            if not cores:
                print("no PBX of the lab has crashed (no core)")
    except LabError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args) -> int:
    from .logs import configure
    from .service import serve, until_signal
    from .supervise import supervise

    if args.instance:
        # One configuration for every instance; the name is this process's own.
        os.environ[f"{settings_mod.ENV_PREFIX}SERVICE__INSTANCE"] = args.instance
    lab = None
    if args.lab:
        from . import components

        s = _load(args, secrets=False, load=components.load, lab=True)
        lab = Lab(s, args.config)
        try:
            desc = lab.up()
        except LabError as exc:
            print(f"lab error: {exc}", file=sys.stderr)
            return 1
        print_lab(desc, s.sidecar.token_file, out=sys.stderr)
    s = _load(args)
    configure(s.log_level, s.log_format)
    # With the lab (or --with-sidecar) the service and the sidecar run as two supervised
    # processes: a failure of one never stops the other. Alone, this process is the service.
    job = (supervise(args.config, list(s.ha.instances)) if (args.lab or args.with_sidecar)
           else serve(s))
    try:
        asyncio.run(until_signal(job))
    except KeyboardInterrupt:
        pass
    finally:
        if lab is not None and not args.keep_lab:
            print("stopped: " + ", ".join(lab.down()), file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    from .standby import describe

    s = _load(args, secrets=False)
    try:
        lines, active = asyncio.run(describe(s))
    except Exception as exc:            # noqa: BLE001 - any Redis failure: say it, exit 1
        print(f"cannot read the service's state from Redis ({s.redis.describe()}): {exc}",
              file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0 if active else 1


def cmd_calls(args) -> int:
    from .reconcile import reconcile

    s = _load(args, secrets=True)
    paths = [Path(p) for p in args.cdr]
    for path in paths:
        if not path.is_file():
            print(f"--cdr {path}: no such file (the PBX's cdr-custom/Master.csv)", file=sys.stderr)
            return 2
    try:
        tally = asyncio.run(reconcile(s, paths))
    except Exception as exc:            # noqa: BLE001 - any Redis failure: say it, exit 1
        print(f"cannot record to Redis ({s.redis.describe()}): {exc}; nothing is lost, the CDR "
              f"still holds the calls: run again", file=sys.stderr)
        return 1
    print(f"{tally.found} unrecorded queue call(s) in the CDR: {tally.recorded} recorded now, "
          f"{tally.already} recorded before" +
          (f", {tally.waiting} not taken by Redis (run again)" if tally.waiting else ""))
    return 1 if tally.waiting else 0


def cmd_check_catalog(args) -> int:
    from transfer.catalog import CatalogError

    try:
        catalog = settings_mod.load_catalog(args.file)
    except CatalogError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    per = {p: sum(c.platform == p for c in catalog.categories) for p in ("12345", "110")}
    print(f"{args.file or 'config/matter-catalog.toml'}: ok ({per['12345']} categories for 12345, "
          f"{per['110']} for 110)")
    return 0


def cmd_recommend(args) -> int:
    from transfer.catalog import CatalogError

    from . import recommender as rec_mod

    try:
        catalog = settings_mod.load_catalog(args.catalog)
    except CatalogError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    trained = False
    if args.train and (args.force or not rec_mod.built()):
        trained = True
        started = time.monotonic()
        try:
            model, samples = rec_mod.build(catalog)
        except rec_mod.CorpusError as exc:
            print("\n".join(exc.problems), file=sys.stderr)
            return 2
        held = sum(s.held_out for s in samples)
        print(f"{rec_mod.model_dir()}: trained on {len(samples) - held} of {len(samples)} descriptions "
              f"({held} held out for make bench), {len(model.category)} features, "
              f"{time.monotonic() - started:.1f} s")
    if args.train and not args.text and not args.code:
        if not trained:
            print(f"{rec_mod.model_dir()}: the model of this corpus is built already")
        return 0
    engine = rec_mod.Recommender(catalog, train_if_missing=True).load_now()
    text = " ".join(args.text) or None
    if not text and not args.code:
        print("give a description (words) or --code", file=sys.stderr)
        return 2
    rec = engine.recommend(code=args.code, text=text)
    answer = {"platform": rec.platform, "category": rec.category,
              "category_name": catalog.by_code[rec.category].name if rec.category else None,
              "emergency": rec.emergency, "why_emergency": rec.emergency_why,
              "confidence": rec.confidence,
              "alternatives": [{"category": a.label, "platform": a.platform,
                                "probability": a.probability} for a in rec.alternatives],
              "reason": rec.reason, "method": rec.method, "matched": list(rec.matched),
              "notify_departments": rec.notify_departments, "read_as": rec.read_as,
              "unsure": rec.unsure or None}
    if engine.error:
        answer["model_error"] = engine.error
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
        return 0
    where = rec.platform or f"无推荐 none (an agent decides: {rec.unsure})"
    how = ("  (紧急先行 emergency first)" if rec.emergency
           else f"  (confidence {rec.confidence:.2f})" if rec.confidence is not None else "")
    if rec.read_as:
        print(f"读作 read as:    {rec.read_as}")
    print(f"平台 platform:   {where}{how}")
    print(f"类别 category:   {rec.category or '-'}"
          + (f" {answer['category_name']}" if rec.category else ""))
    print(f"紧急 emergency:  {'是 yes' if rec.emergency else '否 no'} - {rec.emergency_why or '-'}")
    if rec.alternatives:
        print("候选 alternatives: " + ", ".join(
            f"{a.label} ({a.platform}) {a.probability:.2f}" for a in rec.alternatives))
    print(f"依据 why:        {rec.reason} [{rec.method}]")
    if engine.error:
        print(f"model not loaded, answered by the catalog's terms: {engine.error}")
    return 0


def cmd_dialplan(args) -> int:
    from .render import render_product

    s = _load(args)
    chosen = args.hotline or list(s.hotlines)
    unknown = [h for h in chosen if h not in s.hotlines]
    if unknown:
        print(f"no such hotline: {', '.join(unknown)} (configured: {', '.join(s.hotlines)})",
              file=sys.stderr)
        return 2
    for hid in chosen:
        out = Path(args.out) / hid
        for path in render_product(s, s.hotlines[hid], out):
            print(path)
    return 0


# The sidecar's stop drains alerts for 2 s and closes its HTTP server; past 5 s something inside
# lost the stop, and a sidecar that outlives its stop would go on working beside its successor
# (its consumer group's entries are redelivered, its tickets are idempotent: nothing is lost).
SIDECAR_STOP_WITHIN = 5.0


def cmd_sidecar(args) -> int:
    from sidecar import settings as sidecar_settings
    from sidecar.service import serve

    from .logs import configure

    s = _load(args, load=sidecar_settings.load)
    configure(s.log_level, s.log_format)
    # A centre of the service whose ticket system the sidecar does not speak to (the provincial
    # 12345 a chained transfer reaches, R6): a transfer to it gets tickets on the transferring
    # side; a transfer it makes itself is recorded and chained, without tickets from here.
    missing = [p for p in s.hotlines if p not in s.sidecar.platforms]
    if missing:
        print(f"note: sidecar.platforms has no ticket API for {', '.join(missing)}: transfers "
              "made there are recorded, but get no tickets from this sidecar", file=sys.stderr)
    from .service import until_signal

    asyncio.run(until_signal(serve(s), stop_within=SIDECAR_STOP_WITHIN))
    return 0


def cmd_api_client(args) -> int:
    from sidecar import access
    from sidecar import settings as sidecar_settings

    s = _load(args, secrets=False, load=sidecar_settings.load)
    path = s.sidecar.clients_file
    try:
        if args.action == "add":
            token = access.add(path, args.name, args.role, args.hotline, s.hotlines)
            print(f"client {args.name} added ({args.role}"
                  f"{f' of {args.hotline}' if args.hotline else ''}); its token, shown this once "
                  "(only its hash is kept):", file=sys.stderr)
            print(token)
        elif args.action == "revoke":
            access.revoke(path, args.name)
            print(f"client {args.name} revoked: its token is refused from the next request on",
                  file=sys.stderr)
        else:
            for name, c in access.read(path)["clients"].items():
                state = f"revoked {c['revoked']}" if c.get("revoked") else "active"
                print(f"{name:<24} {c.get('role', '?'):<14} {c.get('hotline') or '-':<8} "
                      f"created {c.get('created', '?')}  {state}")
    except access.ClientsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_doctor(args) -> int:
    from .doctor import check

    report = asyncio.run(check(_load(args)))
    for line in report.ok:
        print(f"ok       {line}")
    for line in report.problems:
        print(f"PROBLEM  {line}")
    print(f"{len(report.problems)} problem(s)")
    return 2 if report.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline-link", description=__doc__)
    parser.add_argument("-c", "--config", help="service config file (TOML), layered over the defaults")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run the ARI apps (and, with --lab, the whole lab) until Ctrl-C")
    p.add_argument("--lab", action="store_true", help="bring the lab up first and down at exit")
    p.add_argument("--keep-lab", action="store_true", help="with --lab: leave the lab running at exit")
    p.add_argument("--instance", metavar="NAME",
                   help="hot standby: this process's name (service.instance); it acts only while "
                        "it holds the lease, and stands by otherwise")
    p.add_argument("--with-sidecar", action="store_true",
                   help="supervise the service and the sidecar as two processes, each restarted "
                        "when it exits (always with --lab)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="演示: a narrated scenario on the running lab (make run), "
                                    "played by the lab's own softphones")
    p.add_argument("--pace", type=float, default=2.0, metavar="S",
                   help="seconds between a step's actions, to watch them on the wallboard")
    p.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("lab", help="the two-PBX test lab")
    lab_sub = p.add_subparsers(dest="action", required=True)
    lab_sub.add_parser("up")
    lab_sub.add_parser("down")
    lab_sub.add_parser("status")
    lab_sub.add_parser("cores", help="the cores crashed PBXs left, with gdb's backtrace of each")
    for verb in ("stop", "start"):
        c = lab_sub.add_parser(verb, help=f"{verb} one lab process (asterisk-12345, asterisk-110, "
                                 "redis; with lab.redis_sentinel: redis-a, redis-b, "
                                 "sentinel-<n>, and redis-primary / redis-replica, the "
                                 "data node that is that now)")
        c.add_argument("name")
    c = lab_sub.add_parser("cli", help="run an Asterisk CLI command on one PBX")
    c.add_argument("pbx")
    c.add_argument("command", nargs="+")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("check-config", help="validate a config file; every problem with its path")
    p.add_argument("file")
    p.add_argument("--no-secrets", action="store_true", help="do not read password/token files")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("dialplan", help="Asterisk config for an existing PBX, from the service config")
    d = p.add_subparsers(dest="action", required=True)
    r = d.add_parser("render", help="write extensions/features/queues/ari/manager/http .conf "
                                    "per hotline into OUT/<hotline>/ (files are 0600: secrets)")
    r.add_argument("--out", default="dialplan-out", help="output folder (default: dialplan-out)")
    r.add_argument("--hotline", action="append", help="only this hotline (repeatable)")
    p.set_defaults(func=cmd_dialplan)

    p = sub.add_parser("sidecar", help="run the sidecar (work-order sync, alerts) until Ctrl-C")
    p.set_defaults(func=cmd_sidecar)

    p = sub.add_parser("api-client", help="the sidecar API's clients: add one (its token is "
                                          "printed once), revoke one, list them")
    a = p.add_subparsers(dest="action", required=True)
    r = a.add_parser("add")
    r.add_argument("name")
    r.add_argument("--role", required=True,
                   help="ticket_system, desktop (both of one --hotline), supervisor (of one "
                        "--hotline, or city-wide with numbers masked), monitoring, admin")
    r.add_argument("--hotline", help="the centre the client belongs to")
    a.add_parser("revoke").add_argument("name")
    a.add_parser("list")
    p.set_defaults(func=cmd_api_client)

    p = sub.add_parser("doctor", help="live self-check of the PBXs, AMI, FastAGI and Redis; "
                                      "each problem with what to change (exit 2 if any)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("status", help="which service instance is active (hot standby), from Redis; "
                                      "exit 1 if none is")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("calls", help="call records")
    calls_sub = p.add_subparsers(dest="action", required=True)
    r = calls_sub.add_parser("reconcile", help="record the queue calls no service took (the "
                                               "service was down) from the PBX's CDR; each once")
    r.add_argument("--cdr", nargs="+", required=True, metavar="CSV",
                   help="the PBX's cdr-custom/Master.csv (one per PBX; any number)")
    r.set_defaults(func=cmd_calls)

    p = sub.add_parser("check-catalog", help="validate the matter catalog")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_check_catalog)

    p = sub.add_parser("recommend", help="which platform and category for a matter code or text, "
                                         "and why")
    p.add_argument("--code")
    p.add_argument("--catalog")
    p.add_argument("--json", action="store_true", help="the answer as one JSON object")
    p.add_argument("--train", action="store_true",
                   help="build the model from config/corpus unless built already for this corpus "
                        "(the bootstrap does this)")
    p.add_argument("--force", action="store_true", help="with --train: build it anyway")
    p.add_argument("text", nargs="*")
    p.set_defaults(func=cmd_recommend)

    args = parser.parse_args(argv)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: for a process that will not stop.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
