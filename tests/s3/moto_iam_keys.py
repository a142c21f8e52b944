"""Create an access key on a moto server started with IAM auth on
(INITIAL_NO_AUTH_ACTION_COUNT=3: these three calls are the only unsigned
ones it will take). Prints "KEY_ID SECRET". Used by scripts/s3-tests.sh --moto
for its second pass, which checks the auth tests against a server that
verifies signatures."""

import json
import sys

import boto3

endpoint = sys.argv[1]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="s3-suite")
iam.put_user_policy(UserName="s3-suite", PolicyName="everything", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="s3-suite")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
