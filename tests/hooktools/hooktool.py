#!/usr/bin/env python3
"""A Juju hook-tool emulator for the charm's end-to-end tests (standard library only).

Installed under every tool name (config-get, relation-set, ...) in a tools directory that
the harness puts first on PATH. Like jujuc, it takes the command from argv[0] and needs
JUJU_CONTEXT_ID, JUJU_AGENT_SOCKET_ADDRESS and JUJU_AGENT_SOCKET_NETWORK; the "agent" is a
state directory: the directory holding the socket path.

It reproduces Juju's argument handling, output formats (json compact with sorted keys,
smart, yaml), exit codes (2 usage, 1 runtime) and `ERROR <msg>` lines, keeps state between
hooks and records every call. relation-set and state-set are buffered and committed only
when the harness ends the hook with exit 0 (`hooktool.py harness STATE end HOOK 0`).

State directory (JSON): model.json {unit, leader, private-address, public-address,
fail: {tool: message}}, config.json, network.json {binding: network-get result},
resources.json {name: local path of the attached file, or null while none is attached},
relations.json {id: {endpoint, remote-app, remote-units: {unit: bag}, local: bag, app: bag,
remote-app-data: bag}}, charm-state.json, leader-settings.json, pending.json, action.json.
Records (JSON lines): calls, status, log, version, relation-set, state-set, hooks, action.
"""

import datetime
import json
import os
import sys

STATUSES = ["maintenance", "blocked", "waiting", "active"]
LEVELS = {"TRACE": "TRACE", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING",
          "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}


# -o/--output of the current call (relative paths resolve against the caller's cwd).
OUTPUT = []


class ToolExit(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def usage(message):
    return ToolExit(2, message)


def runtime(message):
    return ToolExit(1, message)


# ---------------------------------------------------------------- state

class State:
    def __init__(self, root):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, name)

    def load(self, name, default):
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            return default

    def save(self, name, value):
        tmp = self.path(name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(value, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path(name))

    def record(self, name, entry):
        with open(self.path(name + ".jsonl"), "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def narrate(self, line):
        with open(self.path("transcript.log"), "a") as f:
            f.write(line + "\n")

    def records(self, name):
        try:
            with open(self.path(name + ".jsonl")) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []


# ---------------------------------------------------------------- output

def to_json(value):
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's json.Marshal escapes these.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def yaml_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    plain = text and text.strip() == text and not any(c in text for c in ":#{}[],&*!|>'\"%@`\n") \
        and text.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "~", "y", "n") \
        and not text[0] in "-?"
    try:
        float(text)
        plain = False
    except ValueError:
        pass
    return text if plain else json.dumps(text)


def to_yaml(value, indent=0):
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = ""
        for key in sorted(value):
            item = value[key]
            if isinstance(item, (dict, list)) and item:
                out += "%s%s:\n%s" % (pad, yaml_scalar(key), to_yaml(item, indent + 1))
            else:
                out += "%s%s: %s\n" % (pad, yaml_scalar(key), to_yaml(item).strip())
        return out
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = ""
        for item in value:
            body = to_yaml(item, indent + 1).lstrip()
            out += "%s- %s" % (pad, body)
        return out
    return pad + yaml_scalar(value) + "\n"


def render(value, fmt):
    if fmt == "raw":
        return str(value)
    if fmt == "json":
        return to_json(value)
    if fmt == "yaml":
        return "" if value is None else to_yaml(value)
    # smart
    if value is None:
        return ""
    if isinstance(value, bool):
        return ("True" if value else "False") + "\n"
    if isinstance(value, str):
        return value + "\n" if value else ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(v + "\n" for v in value)
    return to_yaml(value)


# ---------------------------------------------------------------- arguments

class Args:
    """gnuflag-like parsing: flags anywhere, --flag=v / --flag v, `--` ends flags."""

    def __init__(self, argv, values=(), switches=(), aliases=None, formatted=False):
        aliases = aliases or {}
        self.flags = {}
        self.positional = []
        values = set(values)
        switches = set(switches)
        if formatted:
            values |= {"format", "output"}
            aliases = dict(aliases, o="output")
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                self.positional.extend(argv[i + 1:])
                break
            if arg.startswith("-") and arg != "-":
                name, eq, inline = arg.lstrip("-").partition("=")
                name = aliases.get(name, name)
                if name in ("h", "help"):
                    raise ToolExit(0, None)
                if name in values:
                    if eq:
                        value = inline
                    elif i + 1 < len(argv):
                        i += 1
                        value = argv[i]
                    else:
                        raise usage("flag needs an argument: %s" % arg)
                    self.flags[name] = value
                elif name in switches and not eq:
                    self.flags[name] = True
                else:
                    raise usage("option provided but not defined: %s" % arg.partition("=")[0])
            else:
                self.positional.append(arg)
            i += 1
        self.format = "smart"
        if formatted:
            fmt = self.flags.get("format", "smart")
            if fmt not in ("smart", "yaml", "json"):
                raise usage('invalid value "%s" for option --format: unknown format "%s"'
                            % (fmt, fmt))
            self.format = fmt
            if "output" in self.flags:
                OUTPUT.append(self.flags["output"])

    def extra(self, expected):
        if len(self.positional) > expected:
            raise usage("unrecognized args: [%s]" % " ".join(
                json.dumps(a) for a in self.positional[expected:]))


def split_pairs(pairs):
    settings = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise usage('expected "key=value", got "%s"' % pair)
        if key in settings:
            raise usage('key "%s" specified more than once' % key)
        settings[key] = value
    return settings


def read_settings_file(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    text = text.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = {}
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, colon, rest = line.partition(":")
            if not colon:
                raise runtime("cannot parse settings file: %r" % line)
            rest = rest.strip()
            if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "'\"":
                rest = rest[1:-1]
            value[key.strip()] = rest
    if not isinstance(value, dict):
        raise runtime("settings file must be a map")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


# ---------------------------------------------------------------- the tools

class Context:
    def __init__(self, state):
        self.state = state
        self.model = state.load("model.json", {})
        self.unit = os.environ.get("JUJU_UNIT_NAME") or self.model.get("unit", "calico/0")
        self.hook = os.environ.get("JUJU_HOOK_NAME", "")
        self.action = os.environ.get("JUJU_ACTION_NAME", "")
        self.relation_id = os.environ.get("JUJU_RELATION_ID", "")
        self.remote_unit = os.environ.get("JUJU_REMOTE_UNIT", "")
        self.remote_app = os.environ.get("JUJU_REMOTE_APP", "")

    def event(self):
        return self.hook or ("action " + self.action if self.action else "")

    def relations(self):
        return self.state.load("relations.json", {})

    def pending(self):
        return self.state.load("pending.json", {"relations": {}, "state": {}})

    def leader(self):
        return bool(self.model.get("leader", False))

    def relation(self, args, required=True):
        raw = args.flags.get("r", args.flags.get("relation"))
        relations = self.relations()
        if raw is None:
            if self.relation_id:
                return self.relation_id, relations[self.relation_id]
            if required:
                raise usage("no relation id specified")
            return None, None
        tail = raw.rsplit(":", 1)[-1]
        if not tail.isdigit():
            raise usage('invalid value "%s" for option -r: invalid relation id' % raw)
        for rid, rel in relations.items():
            if rid.rsplit(":", 1)[-1] == str(int(tail)):
                return rid, rel
        raise usage('invalid value "%s" for option -r: relation not found' % raw)


def tool_config_get(ctx, argv):
    a = Args(argv, switches={"all"}, aliases={"a": "all"}, formatted=True)
    a.extra(1)
    config = ctx.state.load("config.json", {})
    if a.positional:
        if a.flags.get("all"):
            raise usage("cannot use argument --all together with key \"%s\"" % a.positional[0])
        return config.get(a.positional[0]), a.format
    if a.flags.get("all"):
        return config, a.format
    return {k: v for k, v in config.items() if v is not None}, a.format


def tool_network_get(ctx, argv):
    a = Args(argv, values={"r", "relation"},
             switches={"bind-address", "ingress-address", "egress-subnets", "primary-address"},
             formatted=True)
    if not a.positional:
        raise usage("no arguments specified")
    a.extra(1)
    if "r" in a.flags or "relation" in a.flags:
        ctx.relation(a)
    binding = a.positional[0]
    info = ctx.state.load("network.json", {}).get(binding)
    if not info:
        raise runtime('no network config found for binding "%s"' % binding)
    bind = None
    for iface in info.get("bind-addresses", []):
        for addr in iface.get("addresses", []):
            bind = addr.get("value") or addr.get("address")
            break
        if bind:
            break
    ingress = (info.get("ingress-addresses") or [bind])[0]
    picks = {}
    if a.flags.get("bind-address") or a.flags.get("primary-address"):
        picks["bind-address"] = bind
    if a.flags.get("ingress-address"):
        picks["ingress-address"] = ingress
    if a.flags.get("egress-subnets"):
        picks["egress-subnets"] = info.get("egress-subnets", [])
    if len(picks) == 1:
        return list(picks.values())[0], a.format
    if picks:
        return picks, a.format
    return info, a.format


def tool_unit_get(ctx, argv):
    a = Args(argv, formatted=True)
    if not a.positional:
        raise usage("no setting specified")
    a.extra(1)
    key = a.positional[0]
    if key not in ("private-address", "public-address"):
        raise usage('unknown setting "%s"' % key)
    return ctx.model.get(key, "10.0.0.5"), a.format


def tool_is_leader(ctx, argv):
    a = Args(argv, formatted=True)
    a.extra(0)
    return ctx.leader(), a.format


def tool_relation_ids(ctx, argv):
    a = Args(argv, formatted=True)
    a.extra(1)
    endpoint = a.positional[0] if a.positional else os.environ.get("JUJU_RELATION", "")
    if not endpoint:
        raise usage("no endpoint name specified")
    ids = [rid for rid, rel in ctx.relations().items() if rel.get("endpoint") == endpoint
           and not rel.get("dead")]
    ids.sort(key=lambda rid: int(rid.rsplit(":", 1)[-1]))
    return ids, a.format


def tool_relation_list(ctx, argv):
    a = Args(argv, values={"r", "relation"}, switches={"app"}, formatted=True)
    a.extra(0)
    _, rel = ctx.relation(a)
    if a.flags.get("app"):
        return rel.get("remote-app", ""), a.format
    departing = os.environ.get("JUJU_DEPARTING_UNIT", "")
    return sorted(u for u in rel.get("remote-units", {}) if u != departing), a.format


def tool_relation_get(ctx, argv):
    a = Args(argv, values={"r", "relation"}, switches={"app"}, formatted=True)
    a.extra(2)
    rid, rel = ctx.relation(a)
    key = a.positional[0] if a.positional else "-"
    target = a.positional[1] if len(a.positional) > 1 else None
    if target is None:
        target = ctx.remote_unit if not a.flags.get("app") else ctx.remote_app
        if not target and ctx.remote_app:
            target = ctx.remote_app
        if not target:
            raise usage("no unit or application specified")
    if "/" not in target and not a.flags.get("app"):
        raise usage('expected unit name, got application name "%s"' % target)
    if a.flags.get("app"):
        if target == ctx.unit.split("/")[0]:
            bag = dict(rel.get("app", {}))
        elif target == rel.get("remote-app"):
            bag = dict(rel.get("remote-app-data", {}))
        else:
            raise runtime('application "%s" not found in relation %s' % (target, rid))
    elif target == ctx.unit:
        bag = dict(rel.get("local", {}))
        for k, v in ctx.pending()["relations"].get(rid, {}).items():
            if v is None:
                bag.pop(k, None)
            else:
                bag[k] = v
    elif target in rel.get("remote-units", {}):
        bag = dict(rel["remote-units"][target])
    else:
        raise runtime('cannot read settings for unit "%s" in relation "%s": unit "%s": '
                      'settings not found' % (target, rid, target))
    if key == "-":
        return bag, a.format
    return bag.get(key), a.format


def tool_relation_set(ctx, argv):
    a = Args(argv, values={"r", "relation", "file"}, switches={"app"}, formatted=True)
    if "format" in a.flags:
        sys.stderr.write("--format flag deprecated for command \"relation-set\"\n")
    rid, _ = ctx.relation(a)
    settings = {}
    if "file" in a.flags:
        settings.update(read_settings_file(a.flags["file"]))
    settings.update(split_pairs(a.positional))
    if a.flags.get("app") and not ctx.leader():
        raise runtime("cannot write relation settings")
    scope = "app" if a.flags.get("app") else "unit"
    pending = ctx.pending()
    bucket = pending["relations"].setdefault(rid if scope == "unit" else rid + "#app", {})
    for k, v in settings.items():
        bucket[k] = v if v != "" else None
    ctx.state.save("pending.json", pending)
    ctx.state.record("relation-set", {"hook": ctx.event(), "relation": rid, "scope": scope,
                                      "settings": settings})
    ctx.state.narrate("  relation-set -r %s%s %s (pending until the hook succeeds)" % (
        rid, " --app" if scope == "app" else "",
        " ".join("%s=%s" % (k, v) for k, v in sorted(settings.items()))))
    return None, None


def tool_status_set(ctx, argv):
    a = Args(argv, switches={"application"})
    if not a.positional:
        raise usage("invalid args, require <status> [message] [data]")
    if len(a.positional) > 2:
        raise usage("unrecognized args: [%s]" % " ".join(
            json.dumps(x) for x in a.positional[2:]))
    status = a.positional[0]
    if status not in STATUSES:
        raise usage('invalid status "%s", expected one of [%s]' % (status, " ".join(STATUSES)))
    if a.flags.get("application") and not ctx.leader():
        raise runtime("this unit is not the leader")
    message = a.positional[1] if len(a.positional) > 1 else ""
    ctx.state.narrate("  juju status: %s %s %s" % (
        ctx.unit if not a.flags.get("application") else ctx.unit.split("/")[0],
        status, json.dumps(message)))
    ctx.state.record("status", {"hook": ctx.event(), "status": status, "message": message,
                                "by": "charm",
                                "scope": "application" if a.flags.get("application") else "unit"})
    return None, None


def tool_status_get(ctx, argv):
    a = Args(argv, switches={"include-data", "application"}, formatted=True)
    a.extra(0)
    history = [s for s in ctx.state.records("status") if s.get("scope", "unit") == "unit"]
    last = history[-1] if history else {"status": "unknown", "message": ""}
    if a.flags.get("include-data"):
        return {"message": last["message"], "status": last["status"], "status-data": {}}, a.format
    if a.format == "smart":
        return last["status"], a.format
    return {"status": last["status"]}, a.format


def tool_application_version_set(ctx, argv):
    a = Args(argv)
    if not a.positional:
        raise usage("no version specified")
    a.extra(1)
    ctx.state.record("version", {"hook": ctx.event(), "version": a.positional[0]})
    ctx.state.narrate("  juju status: %s version %s" % (ctx.unit.split("/")[0], a.positional[0]))
    return None, None


def tool_juju_log(ctx, argv):
    a = Args(argv, values={"log-level"}, switches={"debug"}, aliases={"l": "log-level"},
             formatted=True)
    if not a.positional:
        raise usage("no message specified")
    requested = a.flags.get("log-level", "DEBUG" if a.flags.get("debug") else "INFO")
    level = LEVELS.get(requested.upper())
    message = " ".join(a.positional)
    if level is None:
        level = "INFO"
        sys.stderr.write("WARNING Specified log level (%s) is not valid\n" % requested)
    if ctx.relation_id:
        message = "%s: %s" % (ctx.relation_id, message)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    tag = "unit-" + ctx.unit.replace("/", "-")
    line = "%s: %s %s unit.%s.juju-log %s" % (tag, now, level, ctx.unit, message)
    ctx.state.record("log", {"hook": ctx.event(), "level": level, "message": message,
                             "line": line})
    ctx.state.narrate("  debug-log: " + line)
    return None, None


def tool_state_get(ctx, argv):
    a = Args(argv, switches={"strict"}, formatted=True)
    a.extra(1)
    state = dict(ctx.state.load("charm-state.json", {}))
    for k, v in ctx.pending()["state"].items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    key = a.positional[0] if a.positional else "-"
    if key == "-":
        if not state:
            return (None if a.format == "json" else {}), a.format
        return state, a.format
    if key not in state:
        if a.flags.get("strict"):
            raise runtime('"%s" not found' % key)
        return "", a.format
    return state[key], a.format


def tool_state_set(ctx, argv):
    a = Args(argv, values={"file"})
    settings = {}
    if "file" in a.flags:
        settings.update(read_settings_file(a.flags["file"]))
    settings.update(split_pairs(a.positional))
    for k, v in settings.items():
        if len(k.encode()) > 256:
            raise runtime("key too long: %d bytes (max 256)" % len(k.encode()))
        if len(v.encode()) > 65536:
            raise runtime("value of %s too long: %d bytes (max 65536)" % (k, len(v.encode())))
    pending = ctx.pending()
    pending["state"].update(settings)
    ctx.state.save("pending.json", pending)
    ctx.state.record("state-set", {"hook": ctx.event(), "settings": settings})
    return None, None


def tool_state_delete(ctx, argv):
    a = Args(argv)
    if not a.positional:
        raise usage("no key specified")
    a.extra(1)
    pending = ctx.pending()
    pending["state"][a.positional[0]] = None
    ctx.state.save("pending.json", pending)
    return None, None


def tool_leader_get(ctx, argv):
    a = Args(argv, formatted=True)
    a.extra(1)
    settings = ctx.state.load("leader-settings.json", {})
    key = a.positional[0] if a.positional else "-"
    if "=" in key:
        raise usage('invalid key "%s"' % key)
    return (settings if key == "-" else settings.get(key)), a.format


def tool_leader_set(ctx, argv):
    a = Args(argv)
    settings = split_pairs(a.positional)
    if not ctx.leader():
        raise runtime("cannot write leadership settings: cannot write settings: not the leader")
    current = ctx.state.load("leader-settings.json", {})
    for k, v in settings.items():
        if v == "":
            current.pop(k, None)
        else:
            current[k] = v
    ctx.state.save("leader-settings.json", current)
    return None, None


def need_action(ctx):
    if not ctx.action:
        raise runtime("not running an action")


def tool_action_get(ctx, argv):
    a = Args(argv, formatted=True)
    a.extra(1)
    need_action(ctx)
    params = ctx.state.load("action.json", {}).get("params", {})
    if not a.positional:
        return params, a.format
    value = params
    for part in a.positional[0].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value, a.format


def tool_action_set(ctx, argv):
    a = Args(argv)
    need_action(ctx)
    results = {}
    for key, value in split_pairs(a.positional).items():
        if key in ("stdout", "stdout-encoding", "stderr", "stderr-encoding"):
            raise usage('cannot set reserved action key "%s"' % key)
        node = results
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    ctx.state.record("action", {"action": ctx.action, "set": results})
    return None, None


def tool_action_fail(ctx, argv):
    a = Args(argv)
    a.extra(1)
    need_action(ctx)
    message = a.positional[0] if a.positional else \
        "action failed without reason given, check action for errors"
    ctx.state.record("action", {"action": ctx.action, "fail": message})
    return None, None


def tool_action_log(ctx, argv):
    a = Args(argv)
    if not a.positional:
        raise usage("no message specified")
    need_action(ctx)
    ctx.state.record("action", {"action": ctx.action, "log": " ".join(a.positional)})
    return None, None


def tool_resource_get(ctx, argv):
    # resource-get.go: exactly one name (exit 2 otherwise); the local path is printed with
    # no trailing newline; a download failure is exit 1 "could not download resource: ...".
    a = Args(argv)
    if not a.positional:
        raise usage("missing required resource name")
    a.extra(1)
    name = a.positional[0]
    resources = ctx.state.load("resources.json", {})
    if name not in resources:
        # Not declared in metadata.yaml (the controller's words; the prefix is resource-get's).
        raise runtime('could not download resource: resource "%s" not found' % name)
    path = resources[name]
    if path is None:
        # Declared, nothing attached (a local charm deployed without --resource).
        raise runtime("could not download resource: HTTP request failed: Get "
                      "https://10.0.0.2:17070/model/4f1c5a3e-9d0b-4a57-8f3e-0c6d2b7a1e90/units/"
                      "unit-%s/resources/%s: resource#%s/%s not found"
                      % (ctx.unit.replace("/", "-"), name, ctx.unit.split("/")[0], name))
    return RawOutput(path), "raw"


class RawOutput(str):
    """A tool output printed exactly as is (resource-get prints no newline)."""


TOOLS = {
    "config-get": tool_config_get,
    "network-get": tool_network_get,
    "unit-get": tool_unit_get,
    "is-leader": tool_is_leader,
    "relation-ids": tool_relation_ids,
    "relation-list": tool_relation_list,
    "relation-get": tool_relation_get,
    "relation-set": tool_relation_set,
    "status-set": tool_status_set,
    "status-get": tool_status_get,
    "application-version-set": tool_application_version_set,
    "juju-log": tool_juju_log,
    "state-get": tool_state_get,
    "state-set": tool_state_set,
    "state-delete": tool_state_delete,
    "leader-get": tool_leader_get,
    "leader-set": tool_leader_set,
    "action-get": tool_action_get,
    "action-set": tool_action_set,
    "action-fail": tool_action_fail,
    "action-log": tool_action_log,
    "resource-get": tool_resource_get,
}


def run_tool(name, argv):
    for var in ("JUJU_CONTEXT_ID", "JUJU_AGENT_SOCKET_ADDRESS", "JUJU_AGENT_SOCKET_NETWORK"):
        if not os.environ.get(var):
            sys.stderr.write("ERROR %s not set\n" % var)
            return 1
    state = State(os.path.dirname(os.environ["JUJU_AGENT_SOCKET_ADDRESS"]))
    ctx = Context(state)
    code, stdout, stderr = 0, "", ""
    try:
        if not os.path.exists(state.path("hook.json")):
            raise runtime("no hook is running (context %s)" % os.environ["JUJU_CONTEXT_ID"])
        injected = ctx.model.get("fail", {}).get(name)
        if injected is not None:
            raise runtime(injected)
        value, fmt = TOOLS[name](ctx, argv)
        if fmt is not None:
            stdout = render(value, fmt)
    except ToolExit as exit:
        code = exit.code
        if exit.message is not None:
            stderr = "ERROR %s\n" % exit.message
        elif code == 0:
            stdout = "usage: %s ...\n" % name
    if code == 0 and OUTPUT:
        with open(OUTPUT[0], "w") as f:
            f.write(stdout)
        stdout = ""
    state.record("calls", {"hook": ctx.event(), "tool": name, "args": argv, "exit": code,
                           "stderr": stderr.strip()})
    if code != 0:
        state.narrate("  %s %s -> exit %d: %s" % (name, " ".join(argv), code, stderr.strip()))
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return code


# ---------------------------------------------------------------- harness side

def unit_name(state):
    return state.load("model.json", {}).get("unit", "calico/0")


def harness(root, command, hook, exit_code=None):
    """begin/end of one hook, as the unit agent does around running the charm."""
    state = State(root)
    history = state.records("status")
    charm_set = [s for s in history if s.get("by") == "charm"]
    if command == "begin":
        state.save("hook.json", {"hook": hook})
        state.narrate("== %s ==" % hook)
        state.save("pending.json", {"relations": {}, "state": {}})
        juju_status = {
            "install": "installing charm software",
            "stop": "stopping charm software",
            "remove": "cleaning up prior to charm deletion",
        }.get(hook)
        if juju_status and not (hook == "install" and charm_set):
            state.record("status", {"hook": hook, "status": "maintenance",
                                    "message": juju_status, "by": "juju", "scope": "unit"})
            state.narrate("  juju status: %s maintenance %s (set by Juju)" % (
                unit_name(state), json.dumps(juju_status)))
        return 0
    if command != "end":
        sys.stderr.write("unknown harness command %s\n" % command)
        return 2
    code = int(exit_code)
    pending = state.load("pending.json", {"relations": {}, "state": {}})
    if code == 0:
        relations = state.load("relations.json", {})
        for key, changes in pending["relations"].items():
            rid, _, app = key.partition("#")
            if rid not in relations:
                continue
            bag = relations[rid].setdefault("app" if app else "local", {})
            for k, v in changes.items():
                if v is None:
                    bag.pop(k, None)
                else:
                    bag[k] = v
        state.save("relations.json", relations)
        charm_state = state.load("charm-state.json", {})
        for k, v in pending["state"].items():
            if v is None:
                charm_state.pop(k, None)
            else:
                charm_state[k] = v
        state.save("charm-state.json", charm_state)
        if hook == "start" and not charm_set:
            state.record("status", {"hook": hook, "status": "unknown", "message": "",
                                    "by": "juju", "scope": "unit"})
            state.narrate("  juju status: %s unknown (set by Juju)" % unit_name(state))
    elif hook.startswith("actions/"):
        # A failed action is marked failed; the unit does not go into error.
        state.narrate("  action %s failed (exit %d)" % (hook, code))
    else:
        state.record("status", {"hook": hook, "status": "error",
                                "message": 'hook failed: "%s"' % hook, "by": "juju",
                                "scope": "unit"})
        state.narrate('  juju status: %s error "hook failed: \\"%s\\"" (exit %d; pending '
                      'relation-set/state-set discarded)' % (unit_name(state), hook, code))
    if code == 0:
        state.narrate("== %s exit 0: committed %s ==" % (hook, json.dumps(pending, sort_keys=True)))
    else:
        state.narrate("== %s exit %d ==" % (hook, code))
    state.record("hooks", {"hook": hook, "exit": code,
                           "committed": code == 0,
                           "pending": pending})
    os.remove(state.path("pending.json"))
    os.remove(state.path("hook.json"))
    return 0


def main():
    name = os.path.basename(sys.argv[0])
    if name in TOOLS:
        return run_tool(name, sys.argv[1:])
    if len(sys.argv) >= 4 and sys.argv[1] == "harness":
        return harness(*sys.argv[2:6])
    sys.stderr.write("hooktool: invoked as %r: not a known hook tool\n" % name)
    return 2


if __name__ == "__main__":
    sys.exit(main())
