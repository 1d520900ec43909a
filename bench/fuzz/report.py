"""The result of one case and the report of a run: outcomes per target, findings, failures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.fuzz.known import known_bug


@dataclass
class CaseResult:
    target: str
    index: int
    outcome: str
    finding: str | None = None  # "kind: detail" when an oracle disagrees
    seconds: float = 0.0


@dataclass
class Report:
    seed: int
    cases: int
    seconds: float = 0.0
    per_target: dict[str, Counter[str]] = field(default_factory=dict)
    findings: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # invariant violations
    checks: int = 0

    def add(self, result: CaseResult) -> None:
        self.per_target.setdefault(result.target, Counter())[result.outcome] += 1
        if result.finding is not None:
            self.findings.append(result)

    def finding_kinds(self) -> Counter[str]:
        return Counter((f.finding or "").split(":", 1)[0] for f in self.findings)

    def unknown_findings(self) -> list[CaseResult]:
        """Findings not explained by a known bug (see ``KNOWN``)."""
        return [f for f in self.findings if known_bug(f.finding or "") is None]

    def unknown_failures(self) -> list[str]:
        return [f for f in self.failures if known_bug(f) is None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "checks": self.checks,
            "per_target": {
                t: {"cases": sum(c.values()), "outcomes": dict(c.most_common())}
                for t, c in self.per_target.items()
            },
            "finding_kinds": dict(self.finding_kinds()),
            "findings": self._examples(),
            "failures": dict(Counter(self.failures).most_common()),
            "unknown_findings": len(self.unknown_findings()),
            "unknown_failures": len(self.unknown_failures()),
        }

    def _examples(self, per_kind: int = 40) -> list[dict[str, Any]]:
        """Up to ``per_kind`` findings of each kind, for the JSON report."""
        seen: Counter[str] = Counter()
        out = []
        for f in self.findings:
            kind = (f.finding or "").split(":", 1)[0]
            seen[kind] += 1
            if seen[kind] <= per_kind:
                out.append(
                    {
                        "target": f.target,
                        "index": f.index,
                        "outcome": f.outcome,
                        "finding": f.finding,
                    }
                )
        return out

    def summary(self) -> str:
        lines = [f"fuzz: {self.cases} cases, seed {self.seed}, {self.seconds:.1f}s, "]
        lines[0] += f"{self.checks} invariant checks"
        for target, counter in self.per_target.items():
            top = ", ".join(f"{k} {v}" for k, v in counter.most_common(12))
            more = len(counter) - 12
            lines.append(
                f"  {target:<10} {sum(counter.values()):>7} cases: {top}"
                + (f", ... ({more} more)" if more > 0 else "")
            )
        kinds = self.finding_kinds()
        lines.append(f"  findings: {sum(kinds.values())} {dict(kinds)}")
        unknown = self.unknown_findings()
        shown = unknown[:15] or self.findings[:5]
        for f in shown:
            known = known_bug(f.finding or "")
            tag = f" [known: {known}]" if known else ""
            lines.append(f"    {f.target}#{f.index}: {f.finding} (outcome {f.outcome}){tag}")
        failures = Counter(self.failures)
        lines.append(
            f"  invariant failures: {len(self.failures)} ({len(self.unknown_failures())} "
            "not explained by a known bug)"
        )
        for msg, n in failures.most_common(15):
            known = known_bug(msg)
            lines.append(f"    {n} x {msg}" + (f" [known: {known}]" if known else ""))
        return "\n".join(lines)
