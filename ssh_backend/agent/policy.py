"""The lab's policy on a host, placed by its admin: fair-share weights and quotas.

Stdlib only, Python >= 3.8. ``/etc/labdeck/policy.toml`` (read with tomllib, so it needs
python3 >= 3.11 on the host) or ``/etc/labdeck/policy.json`` (any python3), the same
keys in both::

    [shares]                  # relative weights; users not listed get `default`
    default = 1
    alice = 2

    [quota]
    max_gpus_per_user = 4     # GPUs one user's runs may hold at once on this host
    max_reservation_hours = 24
    max_reservations_per_user = 2

    [quota.users.alice]       # one user's own limits
    max_gpus = 6

No file: equal shares, no quotas. The file must belong to root and be writable by nobody
else, or it is ignored with a reason (anyone could otherwise grant themselves a quota).
Quotas are enforced here on the host, at lease time, whatever a user's Labdeck believes.
"""

import json
import os
import stat

DEFAULT_DIR = "/etc/labdeck"
# Tests point this at a folder of their own.
ENV_DIR = "LABDECK_POLICY_DIR"
MAX_BYTES = 256 * 1024


class Policy(object):
    def __init__(self, raw=None, source=None, problem=None):
        raw = raw if isinstance(raw, dict) else {}
        self.source = source
        self.problem = problem
        shares = raw.get("shares") if isinstance(raw.get("shares"), dict) else {}
        self.shares = {str(k): float(v) for k, v in shares.items() if _positive(v)}
        quota = raw.get("quota") if isinstance(raw.get("quota"), dict) else {}
        self.max_gpus = _count(quota.get("max_gpus_per_user"))
        self.max_reservation_hours = _number(quota.get("max_reservation_hours"))
        self.max_reservations = _count(quota.get("max_reservations_per_user"))
        users = quota.get("users") if isinstance(quota.get("users"), dict) else {}
        self.user_max_gpus = {}
        for name, limits in users.items():
            if isinstance(limits, dict) and _count(limits.get("max_gpus")) is not None:
                self.user_max_gpus[str(name)] = _count(limits.get("max_gpus"))

    def share(self, user):
        return self.shares.get(user, self.shares.get("default", 1.0))

    def gpu_quota(self, user):
        """The most GPUs ``user``'s runs may hold at once on this host, or None."""
        return self.user_max_gpus.get(user, self.max_gpus)

    def as_dict(self):
        return {"source": self.source, "problem": self.problem, "shares": self.shares,
                "max_gpus_per_user": self.max_gpus, "user_max_gpus": self.user_max_gpus,
                "max_reservation_hours": self.max_reservation_hours,
                "max_reservations_per_user": self.max_reservations}


def _positive(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def _number(value):
    return float(value) if _positive(value) else None


def _count(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _trusted(path):
    """The file's bytes when root owns it and nobody else may write it; else a reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, "%s cannot be read: %s" % (path, exc.strerror)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "%s is not a regular file" % path
        if info.st_uid != 0 or info.st_mode & 0o022:
            return None, ("%s is ignored: it must belong to root and be writable by root "
                          "only" % path)
        return os.read(fd, MAX_BYTES + 1)[:MAX_BYTES], None
    finally:
        os.close(fd)


def load(folder=None):
    """The policy in force (a default one when there is none or it is unusable)."""
    folder = folder or os.environ.get(ENV_DIR) or DEFAULT_DIR
    toml_path = os.path.join(folder, "policy.toml")
    data, problem = _trusted(toml_path)
    if data is not None:
        try:
            import tomllib
        except ImportError:
            return Policy(problem="%s needs python3 >= 3.11 on this host; write the same "
                                  "keys to %s/policy.json instead" % (toml_path, folder))
        try:
            return Policy(tomllib.loads(data.decode("utf-8")), toml_path)
        except (ValueError, UnicodeDecodeError) as exc:
            return Policy(problem="%s is not valid TOML: %s" % (toml_path, str(exc)[:200]))
    if problem:
        return Policy(problem=problem)
    json_path = os.path.join(folder, "policy.json")
    data, problem = _trusted(json_path)
    if data is None:
        return Policy(problem=problem)
    try:
        return Policy(json.loads(data.decode("utf-8")), json_path)
    except (ValueError, UnicodeDecodeError) as exc:
        return Policy(problem="%s is not valid JSON: %s" % (json_path, str(exc)[:200]))
