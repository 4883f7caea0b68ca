"""A judge cascade: a cheap judge on every query, an expensive judge only where the cheap one is not sure.

RLHN (Thakur et al., 2025) runs gpt-4o-mini on every query and reruns the whole prompt with gpt-4o on
the queries where the first judge lists any candidate (about a third of them). Here both judges are any
configured judges (pointwise or listwise, any backend), named by a cascade entry in the config
(``mode: cascade``, ``first``, ``second``). The rule, per query, on the first judge's verdicts
(:func:`escalation`):

* **flagged**: some candidate's verdict is 1 or 2 (the first judge finds it at least partly relevant:
  the candidates the pool would remove, or might, depending on ``keep_verdicts``);
* **undecided**: some candidate has no verdict (no sample of the first judge parsed);
* **disagreement**: some candidate's parsed samples give different scores (the first judge's own
  samples disagree, so its majority vote is a close call).

A query with any of these goes to the second judge, which judges ALL its candidates afresh (as RLHN
reruns the full prompt); its verdicts then stand for that query, also where it gives none (a null
verdict, which the pool leaves out). The other queries keep the first judge's verdicts. The merged
records say which judge decided each candidate (``decided_by``) and why the query was or was not
escalated (``cascade``: ``escalated``, ``reasons``, and the first judge's verdict, votes and tokens, so
the cost of the first pass stays in the file).

This module holds the rule and the merge as pure functions over verdict records; the judge's CLI
(:mod:`boostmdr.judge`: ``verdicts --escalated-by`` and ``cascade``) runs them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REASONS = ("flagged", "undecided", "disagreement")
FIRST_TOKEN_FIELDS = ("prompt_tokens", "prefilled_tokens", "generated_tokens", "cached_generated_tokens")


@dataclass(frozen=True)
class Escalation:
    escalated: bool
    reasons: tuple[str, ...]


def escalation(records: Iterable[Mapping[str, Any]]) -> Escalation:
    """Whether the first judge's verdicts on ONE query's candidates send it to the second judge, and why."""
    reasons: set[str] = set()
    for rec in records:
        verdict = rec["verdict"]
        if verdict is None:
            reasons.add("undecided")
        elif verdict != 0:
            reasons.add("flagged")
        scores = {s.get("score") for s in rec.get("samples", [])} - {None}
        if len(scores) > 1:
            reasons.add("disagreement")
    ordered = tuple(r for r in REASONS if r in reasons)
    return Escalation(bool(ordered), ordered)


def by_query(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        out[str(rec["qid"])].append(rec)
    return dict(out)


def escalations(records: Iterable[Mapping[str, Any]]) -> dict[str, Escalation]:
    """:func:`escalation` of every query that has first-judge records."""
    return {qid: escalation(recs) for qid, recs in by_query(records).items()}


def merge(
    qids: Sequence[str],
    first: Iterable[Mapping[str, Any]],
    second: Iterable[Mapping[str, Any]],
    first_name: str,
    second_name: str,
) -> list[dict[str, Any]]:
    """The cascade's verdict records for ``qids`` (in that order): the second judge's where the first
    escalated the query, the first judge's otherwise. Raises ValueError when an escalated query lacks
    second-judge verdicts for some candidate, or the second judge judged a query that was not escalated."""
    first_q = by_query(first)
    second_q = by_query(second)
    wanted = set(qids)
    out: list[dict[str, Any]] = []
    for qid in qids:
        recs = first_q.get(qid, [])
        if not recs:
            continue
        esc = escalation(recs)
        if not esc.escalated:
            for rec in recs:
                out.append({**rec, "decided_by": first_name, "cascade": {"escalated": False, "reasons": []}})
            continue
        theirs = {str(r["docid"]): r for r in second_q.get(qid, [])}
        missing = [str(r["docid"]) for r in recs if str(r["docid"]) not in theirs]
        if missing:
            raise ValueError(
                f"query {qid!r} was escalated ({', '.join(esc.reasons)}) but the second judge has no verdict for "
                f"{len(missing)} of its candidates, e.g. {missing[:3]}: pass the escalated verdict files made from "
                "these first-judge verdicts"
            )
        for rec in recs:
            mine = theirs[str(rec["docid"])]
            out.append(
                {
                    **mine,
                    "decided_by": second_name,
                    "cascade": {
                        "escalated": True,
                        "reasons": list(esc.reasons),
                        "first_verdict": rec["verdict"],
                        "first_votes": rec.get("votes", {}),
                        "first_tokens": {k: rec.get(k, 0) for k in FIRST_TOKEN_FIELDS},
                    },
                }
            )
    stray = sorted(
        q for q in second_q if q in wanted and (q not in first_q or not escalation(first_q[q]).escalated)
    )
    if stray:
        raise ValueError(
            f"the second judge judged {len(stray)} queries the first did not escalate, e.g. {stray[:3]}: its verdict "
            "files were made from other first-judge verdicts"
        )
    return out
