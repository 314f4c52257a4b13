#!/usr/bin/env bash
# Deploys the Redis session store of OpenEMR with the AWS CLI: the job of `cargo xtask
# deploy-redis`, written as a user would script it, for the comparison in bench/run.py.
# A second run reuses the security group and the instance.
#
# Usage: bench/aws-cli-deploy.sh USER_DATA_FILE OUTPUT_DIR
#
# The AWS CLI reads the endpoint, region and credentials from the environment as usual. The
# variables below set the names; TIMEZONE and FILE_SYSTEM_ID are required. The script writes
# OUTPUT_DIR/openemr/.ebextensions/00-options.config and prints the instance id and private IP.
#
# Unlike deploy-redis, it does not compare the user data of a reused instance, does not revoke
# extra ingress rules of the Redis group, and writes no deployment record.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 USER_DATA_FILE OUTPUT_DIR" >&2
    exit 2
fi
user_data_file=$1
output_dir=$2
vpc_name=${VPC_NAME:-openemr-vpc}
subnet_name=${SUBNET_NAME:-Private}
app_group_name=${APP_SECURITY_GROUP:-openemr-app}
instance_name=${INSTANCE_NAME:-openemr-redis}
instance_type=${INSTANCE_TYPE:-t3.micro}
root_volume_gib=${ROOT_VOLUME_GIB:-8}
export TIMEZONE=${TIMEZONE:?set TIMEZONE to an IANA name such as America/New_York}
export FILE_SYSTEM_ID=${FILE_SYSTEM_ID:?set FILE_SYSTEM_ID to an EFS id such as fs-0123abcd}

template=$(dirname "$0")/00-options.config.tmpl
canonical_owner=099720109477
image_pattern='ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*'
redis_port=6379
tags="{Key=Name,Value=$instance_name},{Key=managed-by,Value=cargo-xtask-deploy-redis}"

ec2() {
    aws ec2 "$@" --output text
}

fail() {
    echo "error: $*" >&2
    exit 1
}

# Prints the only id in $2. Fails with the ids found when there are none or several, naming
# what was looked up ($1).
single_id() {
    local what=$1
    local -a ids
    read -r -a ids <<<"$2"
    case ${#ids[@]} in
        1) echo "${ids[0]}" ;;
        0) fail "$what not found" ;;
        *) fail "${#ids[@]} matches for $what (${ids[*]}): make the name unique" ;;
    esac
}

vpc_ids=$(ec2 describe-vpcs --filters "Name=tag:Name,Values=$vpc_name" --query 'Vpcs[].VpcId')
vpc_id=$(single_id "VPC with Name tag $vpc_name" "$vpc_ids")

subnet_ids=$(ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc_id" "Name=tag:Name,Values=$subnet_name" \
    --query 'Subnets[].SubnetId')
subnet_id=$(single_id "subnet $subnet_name in $vpc_id" "$subnet_ids")

# The app group is found by Name tag, else by group name, and only inside the VPC.
app_group_ids=$(ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc_id" \
    "Name=tag:Name,Values=$app_group_name" --query 'SecurityGroups[].GroupId')
if [[ -z $app_group_ids ]]; then
    app_group_ids=$(ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc_id" \
        "Name=group-name,Values=$app_group_name" --query 'SecurityGroups[].GroupId')
fi
app_group_id=$(single_id "app security group $app_group_name in $vpc_id" "$app_group_ids")

# CreationDate is ISO 8601, so sorting it as text finds the newest image.
image=$(ec2 describe-images --owners "$canonical_owner" \
    --filters "Name=name,Values=$image_pattern" Name=architecture,Values=x86_64 Name=state,Values=available \
    --query 'sort_by(Images, &CreationDate)[-1].[ImageId, RootDeviceName]')
read -r image_id root_device <<<"$image"
[[ $image_id == ami-* ]] || fail "no Ubuntu 24.04 image from Canonical matches $image_pattern"

# Reads the Redis group's id and the source groups of its rules for the Redis port.
redis_group=$(ec2 describe-security-groups \
    --filters "Name=vpc-id,Values=$vpc_id" "Name=group-name,Values=$instance_name" \
    --query "SecurityGroups[0].[GroupId, join(',', IpPermissions[?FromPort==\`$redis_port\`].UserIdGroupPairs[].GroupId)]")
read -r redis_group_id redis_sources <<<"$redis_group"
if [[ $redis_group_id == None ]]; then
    redis_group_id=$(ec2 create-security-group --group-name "$instance_name" --vpc-id "$vpc_id" \
        --description "Redis session store of OpenEMR: TCP $redis_port from $app_group_id only" \
        --tag-specifications "ResourceType=security-group,Tags=[$tags]" --query GroupId)
    redis_sources=""
    echo "created security group $instance_name ($redis_group_id)" >&2
fi
if [[ ,$redis_sources, != *",$app_group_id,"* ]]; then
    ec2 authorize-security-group-ingress --group-id "$redis_group_id" \
        --ip-permissions "IpProtocol=tcp,FromPort=$redis_port,ToPort=$redis_port,UserIdGroupPairs=[{GroupId=$app_group_id}]" \
        >/dev/null
fi

instances=$(ec2 describe-instances \
    --filters "Name=vpc-id,Values=$vpc_id" "Name=tag:Name,Values=$instance_name" \
    Name=instance-state-name,Values=pending,running,stopping,stopped \
    --query 'Reservations[].Instances[].[InstanceId, State.Name]')
if [[ $(wc -l <<<"$instances") -gt 1 ]]; then
    fail "several instances named $instance_name are not terminated: $(tr '\n' ' ' <<<"$instances")"
fi
read -r instance_id instance_state <<<"$instances"
if [[ -n ${instance_id:-} ]]; then
    [[ $instance_state == pending || $instance_state == running ]] ||
        fail "instance $instance_id is $instance_state: start it and rerun"
    echo "reusing instance $instance_id ($instance_state)" >&2
else
    # The client token is derived from the launch parameters, so a retried launch returns the
    # instance of the first attempt instead of starting a second one.
    user_data_sha256=$(sha256sum <"$user_data_file" | cut -d' ' -f1)
    token_input="$instance_name $subnet_id $redis_group_id $image_id $instance_type $root_volume_gib $user_data_sha256"
    client_token="aws-cli-deploy-$(printf '%s' "$token_input" | sha256sum | cut -c1-48)"
    instance_id=$(ec2 run-instances --count 1 --image-id "$image_id" --instance-type "$instance_type" \
        --subnet-id "$subnet_id" --security-group-ids "$redis_group_id" --user-data "file://$user_data_file" \
        --metadata-options HttpEndpoint=enabled,HttpTokens=required,HttpPutResponseHopLimit=1 \
        --block-device-mappings "DeviceName=$root_device,Ebs={VolumeSize=$root_volume_gib,VolumeType=gp3,Encrypted=true,DeleteOnTermination=true}" \
        --disable-api-termination \
        --tag-specifications "ResourceType=instance,Tags=[$tags]" "ResourceType=volume,Tags=[$tags]" \
        --client-token "$client_token" --query 'Instances[0].InstanceId')
    echo "launched instance $instance_id" >&2
fi

# Both waiters of the AWS CLI check every 15 s, at most 40 times each.
aws ec2 wait instance-running --instance-ids "$instance_id"
aws ec2 wait instance-status-ok --instance-ids "$instance_id"

REDIS_IP=$(ec2 describe-instances --instance-ids "$instance_id" \
    --query 'Reservations[0].Instances[0].PrivateIpAddress')
[[ $REDIS_IP != None ]] || fail "instance $instance_id has no private IP"
export REDIS_IP

mkdir -p "$output_dir/openemr/.ebextensions"
# shellcheck disable=SC2016 # envsubst gets the names, not their values.
envsubst '${TIMEZONE} ${REDIS_IP} ${FILE_SYSTEM_ID}' <"$template" \
    >"$output_dir/openemr/.ebextensions/00-options.config"
echo "$instance_id $REDIS_IP"
