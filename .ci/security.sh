#!/usr/bin/env bash
# Security scan of geotel.
#
#   pip-audit  known vulnerabilities in the packages installed in the virtualenv
#   bandit     static analysis of geotel's own code (tests excluded)
#
# Both are installed into the virtualenv when missing. Every finding is printed; the script
# exits non-zero only when a finding is not listed in .ci/security-allowlist.txt (one entry
# per line: an id, then `#` and why it is accepted).
#
#   ids:  pip-audit:<package>:<vulnerability id>      e.g. pip-audit:jinja2:GHSA-h5c8-rqwp-cp95
#         bandit:<test id>:<file>                     e.g. bandit:B608:streams/query.py
#
# Usage: .ci/security.sh [--offline]
#   --offline (or SECURITY_OFFLINE=1) skips pip-audit, which needs the vulnerability service.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
ALLOWLIST=".ci/security-allowlist.txt"
OFFLINE="${SECURITY_OFFLINE:-0}"
[[ "${1:-}" == "--offline" ]] && OFFLINE=1

need() {  # need <module> <package>
    "$PY" -c "import $1" 2>/dev/null || "$PY" -m pip install --quiet "$2"
}
need bandit bandit
[[ "$OFFLINE" == 1 ]] || need pip_audit pip-audit

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

if [[ "$OFFLINE" == 1 ]]; then
    echo "pip-audit: skipped (offline)"
    echo '{"dependencies": []}' > "$out/audit.json"
else
    # exit status 1 means "vulnerabilities found": the report below decides
    "$PY" -m pip_audit --format json --skip-editable --progress-spinner off \
        --output "$out/audit.json" || [[ -s "$out/audit.json" ]]
fi

"$PY" -m bandit --quiet --recursive schemas processors sinks streams geo simulator \
    --exclude tests --format json --output "$out/bandit.json" || [[ -s "$out/bandit.json" ]]

"$PY" - "$out/audit.json" "$out/bandit.json" "$ALLOWLIST" <<'PY'
import json
import sys
from pathlib import Path

audit_path, bandit_path, allow_path = sys.argv[1:4]
allowed = set()
allow_file = Path(allow_path)
if allow_file.exists():
    for line in allow_file.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            allowed.add(entry)

findings = []  # (id, text)
for dep in json.loads(Path(audit_path).read_text()).get("dependencies", []):
    for v in dep.get("vulns", []):
        fixed = ", ".join(v.get("fix_versions") or []) or "no fix yet"
        findings.append((f"pip-audit:{dep['name'].lower()}:{v['id']}",
                         f"{dep['name']} {dep.get('version')}: {v['id']} (fixed in {fixed}) "
                         f"{(v.get('description') or '')[:160]}"))
for r in json.loads(Path(bandit_path).read_text()).get("results", []):
    findings.append((f"bandit:{r['test_id']}:{r['filename'].removeprefix('./')}",
                     f"{r['filename']}:{r['line_number']} {r['test_id']} "
                     f"[{r['issue_severity']}/{r['issue_confidence']}] {r['issue_text']}"))

new = []
for ident, text in findings:
    mark = "allowed" if ident in allowed else "NEW"
    print(f"{mark:8} {ident}\n         {text}")
    if ident not in allowed:
        new.append(ident)
stale = sorted(allowed - {i for i, _ in findings})
for ident in stale:
    print(f"unused allowlist entry: {ident}")
print(f"security: {len(findings)} findings, {len(findings) - len(new)} allowed, "
      f"{len(new)} new")
sys.exit(1 if new else 0)
PY
