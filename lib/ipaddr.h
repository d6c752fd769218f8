/* IP addresses, one type for every program: parsing (IPv4, IPv6, an IPv6
 * zone), canonical text, ordering, socket addresses, prefixes and the
 * public-address filter. */
#ifndef PVEKIT_IPADDR_H
#define PVEKIT_IPADDR_H

#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest text ipaddr_format writes, with a "%zone" and the NUL. */
#define IPADDR_STRLEN (INET6_ADDRSTRLEN + IF_NAMESIZE + 1)

struct ipaddr {
	uint8_t family; /* AF_INET (a[0..3]) or AF_INET6 */
	uint8_t a[16];
	uint32_t scope; /* IPv6 zone: an interface index; 0 for none */
};

/* A strict dotted quad or an RFC 4291 IPv6 address, no zone; 0 or -1. */
int ipaddr_parse(const char *s, struct ipaddr *out);
/* The same, and an IPv6 address may carry a zone: "fe80::1%eth0" (an
 * interface that exists now) or "fe80::1%2" (an index). 0 or -1. */
int ipaddr_parse_scoped(const char *s, struct ipaddr *out);
/* Does s parse with ipaddr_parse? */
int ipaddr_valid(const char *s);

/* Canonical text (RFC 5952 for IPv6), with "%zone" when there is one (the
 * interface's name for a link-local address, else its index). */
void ipaddr_format(const struct ipaddr *ip, char out[IPADDR_STRLEN]);

/* IPv4 before IPv6, then numeric, then by zone; a qsort comparator. */
int ipaddr_cmp(const void *a, const void *b);
/* Sorts and drops duplicates; returns the new count. */
size_t ipaddr_sort_unique(struct ipaddr *v, size_t n);
/* Both texts parse (ipaddr_parse) as the same address, or, when either
 * does not parse, the texts are equal; NULL never equals anything. */
int ipaddr_same(const char *a, const char *b);

/* A socket address for ip and port (network byte order is done here);
 * returns its length. */
socklen_t ipaddr_to_sockaddr(const struct ipaddr *ip, uint16_t port, struct sockaddr_storage *sa);
/* The address of an AF_INET or AF_INET6 socket address; 0 or -1. */
int ipaddr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out);

/* An address block: "ADDR/LEN" or "ADDR" (LEN is then the full length, 32
 * or 128), the address as ipaddr_parse takes it, LEN a plain decimal; the
 * address bits after LEN are kept as given. 0 or -1. */
int ipaddr_parse_net(const char *s, struct ipaddr *out, unsigned *len);
/* The prefix length of a netmask ("255.255.255.248", "ffff:ffff:ffff:ffff::"),
 * or -1 when its ones are not contiguous from the left. */
int ipaddr_mask_len(const struct ipaddr *mask);
/* 1 when ip lies in net/len: the same family and the same first len bits. */
int ipaddr_in_net(const struct ipaddr *ip, const struct ipaddr *net, unsigned len);

/* fe80::/10 */
int ipaddr_is_ll6(const struct ipaddr *ip);
/* Not public: unspecified, loopback, link-local, RFC 1918, CGNAT 100.64/10,
 * ULA fc00::/7, documentation ranges, multicast, and the rest of the
 * special-purpose blocks that are never routed on the Internet. */
int ipaddr_is_public(const struct ipaddr *ip);

#endif
