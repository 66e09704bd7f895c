"""azfed inside Neutron: VPC subnets mirrored as Neutron networks, the ML2 mechanism driver
that binds burst VMs' ports, and their security groups mirrored as EC2 groups."""
