"""Quality's domain: specifications, certificates, lots and their test results, quality status, eligibility.

Pure: no I/O; time comes in as arguments, and operations return the events they cause. One module per aggregate:
`specifications`, `certificates`, `lots` (registration, lab reports, the decision), `status` (each foundry's quality
status) and `eligibility`; `items` is the catalogue they share, `errors` the ways a command fails.
"""

from __future__ import annotations

from .certificates import (
    EXPIRY_WARNING_DAYS,
    FOUNDRY_CODE,
    MAX_VALIDITY_YEARS,
    Certificate,
    CertificateState,
    Notice,
    expiry_notices,
    grant_certificate,
    revoke_certificate,
)
from .eligibility import (
    Candidate,
    Reason,
    Verdict,
    judge_eligibility,
)
from .errors import (
    Rejected,
    StateConflict,
    Violation,
)
from .items import (
    ITEM_CODE,
    UNITS,
    Catalogue,
    Item,
    ItemTerms,
    create_item,
    publish_version,
    published,
    retire_item,
    unknown_item,
)
from .lots import (
    LOT_CODE,
    MAX_LOT_QUANTITY,
    Evaluation,
    Finding,
    LabReport,
    Lot,
    LotStatus,
    Measurement,
    Sample,
    decide_lot,
    evaluate,
    read_samples,
    register_lot,
)
from .specifications import (
    DEFAULT_SPECIFICATIONS,
    PARAMETER_CODE,
    Parameter,
    RuleKind,
    SamplingRule,
    Specification,
    check_parameter,
    default_specification,
    revise_specification,
)
from .status import (
    FoundryQuality,
    StatusRule,
    initial_quality,
    override_status,
    reassess,
    release_override,
)

__all__ = [
    "DEFAULT_SPECIFICATIONS",
    "EXPIRY_WARNING_DAYS",
    "FOUNDRY_CODE",
    "ITEM_CODE",
    "LOT_CODE",
    "MAX_LOT_QUANTITY",
    "MAX_VALIDITY_YEARS",
    "PARAMETER_CODE",
    "UNITS",
    "Candidate",
    "Catalogue",
    "Certificate",
    "CertificateState",
    "Evaluation",
    "Finding",
    "FoundryQuality",
    "Item",
    "ItemTerms",
    "LabReport",
    "Lot",
    "LotStatus",
    "Measurement",
    "Notice",
    "Parameter",
    "Reason",
    "Rejected",
    "RuleKind",
    "Sample",
    "SamplingRule",
    "Specification",
    "StateConflict",
    "StatusRule",
    "Verdict",
    "Violation",
    "check_parameter",
    "create_item",
    "decide_lot",
    "default_specification",
    "evaluate",
    "expiry_notices",
    "grant_certificate",
    "initial_quality",
    "judge_eligibility",
    "override_status",
    "publish_version",
    "published",
    "read_samples",
    "reassess",
    "register_lot",
    "release_override",
    "retire_item",
    "revise_specification",
    "revoke_certificate",
    "unknown_item",
]
