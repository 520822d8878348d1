#!/usr/bin/env bash
# A three-zone kind cluster with portable IPs, mzlb and a demo app, in one command.
# Needs: docker, kind, kubectl, helm. Re-running it upgrades what is already there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cluster=mzlb
image=mzlb:0.1.0
metallb_version=v0.14.9

for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || { echo "up.sh: $tool is required" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$cluster"; then
    kind create cluster --config "$here/cluster.yaml" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

echo "==> building $image and loading it into the nodes"
docker build -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

# Portable IPs from the top of the kind Docker network (IPv4), away from the nodes' addresses.
subnet="$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep -m1 '\.')"
prefix="$(echo "$subnet" | cut -d. -f1-2)"
export ZONE1_IP="$prefix.255.1" ZONE2_IP="$prefix.255.2" ZONE3_IP="$prefix.255.3" DNS_IP="$prefix.255.53"

echo "==> installing MetalLB $metallb_version (L2, one pool per zone)"
kubectl apply -f "https://raw.githubusercontent.com/metallb/metallb/$metallb_version/config/manifests/metallb-native.yaml"
kubectl -n metallb-system wait --for=condition=Available deployment/controller --timeout=180s
kubectl -n metallb-system rollout status daemonset/speaker --timeout=180s
envsubst <"$here/metallb.yaml.tpl" | kubectl apply -f -

echo "==> installing the mzlb chart"
helm upgrade --install mzlb "$root/charts/mzlb" \
    --namespace mzlb-system --create-namespace \
    --set image.repository=mzlb --set image.tag=0.1.0 --set image.pullPolicy=Never \
    --set "zones[0].name=zone-1,zones[0].ip=$ZONE1_IP" \
    --set "zones[1].name=zone-2,zones[1].ip=$ZONE2_IP" \
    --set "zones[2].name=zone-3,zones[2].ip=$ZONE3_IP" \
    --set serve.dnsService.type=LoadBalancer --set "serve.dnsService.loadBalancerIP=$DNS_IP" \
    --wait --timeout 5m

echo "==> deploying the demo app"
kubectl apply -f "$here/demo-app.yaml"
kubectl -n demo rollout status deployment/echo --timeout=180s

cat <<DONE

Ready. IBM's multi-zone walkthrough, step by step:

  # 1. The cluster's name answers with every healthy zone ALB:
  dig @$DNS_IP www.demo.mzlb.test +short

  # 2. The ALBs, as mzlb sees them (or: kubectl get zonealbs):
  cargo run --release -p mzlb -- albs --context kind-$cluster

  # 3. Take zone-2 out; DNS drops it within a second:
  cargo run --release -p mzlb -- alb-configure --alb-id alb-zone-2 --disable --context kind-$cluster
  dig @$DNS_IP www.demo.mzlb.test +short

  # 4. curl through whichever zone DNS gives; the echo shows the pod, X-Forwarded-For and REMOTE_ADDR:
  while sleep 1; do curl -s --resolve www.demo.mzlb.test:80:\$(dig @$DNS_IP +short www.demo.mzlb.test | head -1) http://www.demo.mzlb.test/ | head -3; done

  # 5. Bring it back:
  cargo run --release -p mzlb -- alb-configure --alb-id alb-zone-2 --enable --context kind-$cluster

Remove everything with: $here/down.sh
DONE
