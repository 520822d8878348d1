# MetalLB in L2 mode: one pool per zone holding that zone's portable IP, announced only by the
# zone's own nodes, and one pool for the DNS service. up.sh fills in the addresses.
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: zone-1, namespace: metallb-system}
spec:
  addresses: ["${ZONE1_IP}/32"]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: zone-1, namespace: metallb-system}
spec:
  ipAddressPools: [zone-1]
  nodeSelectors:
    - matchLabels: {topology.kubernetes.io/zone: zone-1}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: zone-2, namespace: metallb-system}
spec:
  addresses: ["${ZONE2_IP}/32"]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: zone-2, namespace: metallb-system}
spec:
  ipAddressPools: [zone-2]
  nodeSelectors:
    - matchLabels: {topology.kubernetes.io/zone: zone-2}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: zone-3, namespace: metallb-system}
spec:
  addresses: ["${ZONE3_IP}/32"]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: zone-3, namespace: metallb-system}
spec:
  ipAddressPools: [zone-3]
  nodeSelectors:
    - matchLabels: {topology.kubernetes.io/zone: zone-3}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: dns, namespace: metallb-system}
spec:
  addresses: ["${DNS_IP}/32"]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: dns, namespace: metallb-system}
spec:
  ipAddressPools: [dns]
