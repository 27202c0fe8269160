//! The service proxy: kube-proxy's model, programmed as nftables rules.
