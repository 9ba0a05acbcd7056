"""The bundled on-demand price catalog: Linux, shared tenancy, USD per hour.

Prices are the us-east-1 list prices as published by AWS on `AS_OF`; other regions are those
prices times a regional factor (the usual premium of that region over us-east-1), so their
figures are estimates and say so (`estimated=True`). The Pricing API, when reachable,
replaces them with exact figures cached on disk (see `app.costs.PriceCatalog.refresh`).
"""

from __future__ import annotations

AS_OF = "2025-01-15"
BASE_REGION = "us-east-1"

# Regional premium over us-east-1 (typical across the general-purpose and GPU families).
REGION_FACTORS: dict[str, float] = {
    "us-east-1": 1.0,
    "us-east-2": 1.0,
    "us-west-2": 1.0,
    "us-west-1": 1.17,
    "ca-central-1": 1.10,
    "eu-west-1": 1.11,
    "eu-west-2": 1.16,
    "eu-central-1": 1.19,
    "eu-north-1": 1.06,
    "ap-south-1": 1.05,
    "ap-northeast-1": 1.28,
    "ap-northeast-2": 1.22,
    "ap-southeast-1": 1.25,
    "ap-southeast-2": 1.25,
    "sa-east-1": 1.55,
}

# Regions where us-east-1, us-east-2 and us-west-2 charge the same list price.
EXACT_REGIONS = frozenset({"us-east-1", "us-east-2", "us-west-2"})

ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    # t3
    "t3.nano": 0.0052,
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
    # m5
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m5.8xlarge": 1.536,
    "m5.12xlarge": 2.304,
    "m5.16xlarge": 3.072,
    "m5.24xlarge": 4.608,
    # m6i
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m6i.4xlarge": 0.768,
    "m6i.8xlarge": 1.536,
    "m6i.12xlarge": 2.304,
    "m6i.16xlarge": 3.072,
    "m6i.24xlarge": 4.608,
    "m6i.32xlarge": 6.144,
    # m7i
    "m7i.large": 0.1008,
    "m7i.xlarge": 0.2016,
    "m7i.2xlarge": 0.4032,
    "m7i.4xlarge": 0.8064,
    "m7i.8xlarge": 1.6128,
    "m7i.12xlarge": 2.4192,
    "m7i.16xlarge": 3.2256,
    "m7i.24xlarge": 4.8384,
    "m7i.48xlarge": 9.6768,
    # c5
    "c5.large": 0.085,
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c5.4xlarge": 0.68,
    "c5.9xlarge": 1.53,
    "c5.12xlarge": 2.04,
    "c5.18xlarge": 3.06,
    "c5.24xlarge": 4.08,
    # c6i
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c6i.4xlarge": 0.68,
    "c6i.8xlarge": 1.36,
    "c6i.12xlarge": 2.04,
    "c6i.16xlarge": 2.72,
    "c6i.24xlarge": 4.08,
    "c6i.32xlarge": 5.44,
    # g4dn: NVIDIA T4
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g4dn.16xlarge": 4.352,
    "g4dn.metal": 7.824,
    # g5: NVIDIA A10G
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g5.16xlarge": 4.096,
    "g5.24xlarge": 8.144,
    "g5.48xlarge": 16.288,
    # g6: NVIDIA L4
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.4xlarge": 1.3232,
    "g6.8xlarge": 2.0144,
    "g6.12xlarge": 4.6016,
    "g6.16xlarge": 3.3968,
    "g6.24xlarge": 6.6752,
    "g6.48xlarge": 13.3504,
    # p3: NVIDIA V100
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
    "p3.16xlarge": 24.48,
    # p4d: NVIDIA A100 40 GB
    "p4d.24xlarge": 32.7726,
    # p5: NVIDIA H100
    "p5.48xlarge": 98.32,
}

# gp3 storage, USD per GB-month in us-east-1 (what a stopped instance keeps paying for).
EBS_GP3_USD_PER_GB_MONTH = 0.08
