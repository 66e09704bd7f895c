"""The collector's cut of botocore's EC2 model is the installed botocore's, cut."""

from __future__ import annotations

import json

from azfed.agent.collect import botomodels
from botocore.loaders import Loader


def test_the_shipped_model_is_the_pinned_botocores_cut_to_the_collectors_calls() -> None:
    """Regenerated from the installed botocore, the file is unchanged: a botocore upgrade
    that changed these operations' shapes makes this fail until the file is made again
    (`python -m azfed.agent.collect.botomodels`)."""
    loader = Loader()
    for service, operations in botomodels.OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        full = loader.load_service_model(service, "service-2", version)
        shipped = botomodels.model_path(service, version).read_text()
        assert shipped == botomodels.render(botomodels.trim(full, operations)), (
            f"{service} {version}: run python -m azfed.agent.collect.botomodels"
        )
        cut = json.loads(shipped)
        assert sorted(cut["operations"]) == sorted(operations)
        # every shape an operation reaches is there, so botocore resolves each one
        for name in cut["operations"]:
            for ref in ("input", "output"):
                assert cut["operations"][name][ref]["shape"] in cut["shapes"]


def test_the_collectors_ec2_client_knows_only_the_cut_operations() -> None:
    """A botocore session with the collector's data path loads the cut model (the one the
    EC2 collector's calls are tested with against moto), not botocore's whole one."""
    from botocore.session import get_session

    session = get_session()
    session.set_config_variable("data_path", str(botomodels.DATA_DIR))
    model = session.get_service_model("ec2")
    assert sorted(model.operation_names) == sorted(botomodels.OPERATIONS["ec2"])
    assert model.operation_model("DescribeInstances").output_shape.members["Reservations"]
