#!/bin/sh
# The example's Kubernetes fallback (config/fullstack-kube.toml, `fall_back_on`): an image-level
# change (runtime/syncd-supervise is baked into the image) needs new pods.
#   Under Tilt (the syncd extension runs the daemon with SYNCD_UNDER_TILT=1): Tilt rebuilds the
#   image and redeploys the resource: `tilt trigger SERVICE`.
#   Otherwise: restart the Deployment's pods on the image they have (namespace $FULLSTACK_NAMESPACE,
#   default dev).
# Usage: redeploy.sh backend|frontend
set -eu
svc=${1:?usage: redeploy.sh backend|frontend}
if [ -n "${SYNCD_UNDER_TILT:-}" ]; then
  exec tilt trigger "$svc"
fi
exec kubectl -n "${FULLSTACK_NAMESPACE:-dev}" rollout restart "deployment/fullstack-$svc"
