#!/usr/bin/env bash
# The main job: a local 3-node toasty cluster on loopback with the S3
# endpoint on 127.0.0.1:3000 (data and logs under data/cluster/). Builds in
# release mode on the first run, starts the nodes in the background, waits
# until every group answers, and prints the endpoint and a development key.
# Stop it with `scripts/cluster.sh stop`; `scripts/cluster.sh status` shows
# every shard. Settings: see scripts/cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/cluster.sh start
echo
echo "Try it (after the three exports above):"
echo '  echo hello > hello.txt'
echo '  S3="curl --aws-sigv4 aws:amz:us-east-1:s3 --user $AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"'
echo '  $S3 -X PUT http://127.0.0.1:3000/demo                  # create a bucket'
echo '  $S3 -T hello.txt http://127.0.0.1:3000/demo/hello.txt  # put an object'
echo '  $S3 http://127.0.0.1:3000/demo/hello.txt               # get it'
echo '  $S3 -X DELETE http://127.0.0.1:3000/demo/hello.txt     # delete it'
echo '  aws --endpoint-url http://127.0.0.1:3000 s3 ls'
echo "Stop: scripts/cluster.sh stop"
