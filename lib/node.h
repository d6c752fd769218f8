/* Proxmox node names: this node's, and the rule pmxcfs applies to them. */
#ifndef PVEKIT_NODE_H
#define PVEKIT_NODE_H

#define NODE_NAME_MAX 64

/* This node's name as Proxmox computes it: uname -n cut at the first '.'. */
const char *local_node_name(void);

/* A node name as pmxcfs accepts it (letters, digits, '-'; no leading '-'). */
int node_name_valid(const char *s);

#endif
