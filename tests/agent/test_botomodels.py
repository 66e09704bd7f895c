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


def test_the_shipped_endpoints_are_the_pinned_botocores_cut_to_the_collectors_services() -> None:
    """endpoints.json regenerated from the installed botocore is unchanged, and holds every
    partition with only the EC2 and CloudWatch services (`monitoring`) in each."""
    loader = Loader()
    full = loader.load_data("endpoints")
    prefixes = botomodels.endpoint_prefixes(loader)
    assert prefixes == {"ec2", "monitoring"}
    shipped = botomodels.ENDPOINTS_PATH.read_text()
    assert shipped == botomodels.render(botomodels.trim_endpoints(full, prefixes)), (
        "run python -m azfed.agent.collect.botomodels"
    )
    cut = json.loads(shipped)
    assert [p["partition"] for p in cut["partitions"]] == [
        p["partition"] for p in full["partitions"]
    ]
    assert all(set(p["services"]) <= prefixes for p in cut["partitions"])


def test_the_cut_endpoints_resolve_the_collectors_services_as_botocores_own() -> None:
    """For EC2 and CloudWatch, in every region of every partition botocore knows, the cut
    file gives the endpoint botocore's whole file gives."""
    from botocore.regions import EndpointResolver

    full = EndpointResolver(Loader().load_data("endpoints"))
    cut = EndpointResolver(json.loads(botomodels.ENDPOINTS_PATH.read_text()))
    checked = 0
    for partition in full.get_available_partitions():
        for service in ("ec2", "monitoring"):
            for region in full.get_available_endpoints(service, partition):
                assert cut.construct_endpoint(service, region) == full.construct_endpoint(
                    service, region
                ), (service, region)
                checked += 1
    assert checked > 50
