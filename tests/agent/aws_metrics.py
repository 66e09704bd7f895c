"""CloudWatch metric names and units as AWS documents them, written out here on purpose.

Tests seed moto's CloudWatch with these, never with names taken from the collector's own
table: a collector that asked CloudWatch for a misspelt or invented metric would then find
nothing and fail, as it would against AWS.

Sources: "List the available CloudWatch metrics for your instances" (Amazon EC2 User Guide,
namespace AWS/EC2) and "Metrics collected by the CloudWatch agent" (Amazon CloudWatch User
Guide, namespace CWAgent, Linux `mem` section), "Amazon EBS metrics" (Amazon EBS User Guide,
namespace AWS/EBS, dimension VolumeId).
"""

from __future__ import annotations

from typing import Final

EC2: Final = "AWS/EC2"
CWAGENT: Final = "CWAgent"
EBS: Final = "AWS/EBS"

# metric name -> (namespace, the unit CloudWatch reports it in)
DOCUMENTED: Final[dict[str, tuple[str, str]]] = {
    # instance metrics
    "CPUUtilization": (EC2, "Percent"),
    "NetworkIn": (EC2, "Bytes"),
    "NetworkOut": (EC2, "Bytes"),
    "NetworkPacketsIn": (EC2, "Count"),
    "NetworkPacketsOut": (EC2, "Count"),
    # instance store volumes (the only volumes these count on Nitro instances)
    "DiskReadBytes": (EC2, "Bytes"),
    "DiskWriteBytes": (EC2, "Bytes"),
    "DiskReadOps": (EC2, "Count"),
    "DiskWriteOps": (EC2, "Count"),
    # EBS volumes attached to Nitro instances
    "EBSReadBytes": (EC2, "Bytes"),
    "EBSWriteBytes": (EC2, "Bytes"),
    "EBSReadOps": (EC2, "Count"),
    "EBSWriteOps": (EC2, "Count"),
    # each EBS volume, by VolumeId
    "VolumeReadBytes": (EBS, "Bytes"),
    "VolumeWriteBytes": (EBS, "Bytes"),
    "VolumeReadOps": (EBS, "Count"),
    "VolumeWriteOps": (EBS, "Count"),
    # status checks
    "StatusCheckFailed": (EC2, "Count"),
    "StatusCheckFailed_Instance": (EC2, "Count"),
    "StatusCheckFailed_System": (EC2, "Count"),
    # the CloudWatch agent's memory measurements (Linux)
    "mem_used": (CWAGENT, "Bytes"),
    "mem_used_percent": (CWAGENT, "Percent"),
    "mem_available": (CWAGENT, "Bytes"),
    "mem_available_percent": (CWAGENT, "Percent"),
    "mem_total": (CWAGENT, "Bytes"),
}
