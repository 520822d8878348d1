//! Where objects come from. Each source yields the same [`Objects`](crate::objects::Objects)
//! set, so routing and DNS are compiled by one code path whatever the mode.

pub mod dir;
pub mod kube_watch;
