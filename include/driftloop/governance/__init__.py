"""Governance: the promotion gate and its evidence (explanations, fairness, behaviour), model cards, the audit
log and lineage."""
