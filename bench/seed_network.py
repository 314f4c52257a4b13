"""Seed a moto EC2 emulator with the network of the OpenEMR AWS guide.

Run with the Python of target/moto-venv, which has boto3:

    target/moto-venv/bin/python bench/seed_network.py http://127.0.0.1:PORT

It creates the same resources as `cargo xtask sandbox`: the VPC `openemr-vpc` (10.0.0.0/16),
its four subnets, the app servers' security group `openemr-app`, and a decoy group of the same
name in moto's default VPC, which no tool may pick. It prints the ids as JSON.
"""

import json
import sys

import boto3

REGION = "us-east-1"
VPC_NAME = "openemr-vpc"
APP_GROUP_NAME = "openemr-app"
SUBNETS = [
    ("Public", "10.0.0.0/24", "us-east-1a"),
    ("Private", "10.0.1.0/24", "us-east-1a"),
    ("Other Public", "10.0.2.0/24", "us-east-1b"),
    ("Other Private", "10.0.3.0/24", "us-east-1b"),
]


def name_tags(resource_type, name):
    return [{"ResourceType": resource_type, "Tags": [{"Key": "Name", "Value": name}]}]


def seed(endpoint):
    """Create the guide's network in the emulator at `endpoint` and return the new ids."""
    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=name_tags("vpc", VPC_NAME))["Vpc"]["VpcId"]

    subnet_ids = {}
    for name, cidr, zone in SUBNETS:
        subnet = ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=name_tags("subnet", name),
        )
        subnet_ids[name] = subnet["Subnet"]["SubnetId"]

    app_group_id = ec2.create_security_group(
        GroupName=APP_GROUP_NAME,
        Description="OpenEMR app servers",
        VpcId=vpc_id,
        TagSpecifications=name_tags("security-group", APP_GROUP_NAME),
    )["GroupId"]
    decoy_group_id = ec2.create_security_group(
        GroupName=APP_GROUP_NAME,
        Description="Decoy: same name, default VPC",
        TagSpecifications=name_tags("security-group", APP_GROUP_NAME),
    )["GroupId"]
    return {"vpc_id": vpc_id, "subnet_ids": subnet_ids, "app_group_id": app_group_id, "decoy_group_id": decoy_group_id}


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http://127.0.0.1:"):
        sys.exit("usage: seed_network.py http://127.0.0.1:PORT (a moto_server on loopback)")
    print(json.dumps(seed(sys.argv[1])))
