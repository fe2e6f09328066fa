#include "limits.hpp"

#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <random>

namespace slabd::server {

namespace {

constexpr std::array<std::uint8_t, 12> v4_mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void cut(std::array<std::uint8_t, 16>& bytes, unsigned keep_bits) noexcept {
    for (unsigned i = 0; i < 16; ++i) {
        const unsigned start = i * 8;
        if (keep_bits >= start + 8) continue;
        const unsigned keep = keep_bits > start ? keep_bits - start : 0;
        bytes[i] &= static_cast<std::uint8_t>(0xFF00u >> keep);
    }
}

// A per-process seed: a client that chooses its addresses cannot aim them at one probe chain.
const std::uint64_t hash_seed = [] {
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ device();
}();

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

}  // namespace

source_key make_source_key(const asio::ip::address& address, unsigned v4_prefix,
                           unsigned v6_prefix) noexcept {
    source_key key;
    if (address.is_v4() || (address.is_v6() && address.to_v6().is_v4_mapped())) {
        const auto v4 = address.is_v4()
                            ? address.to_v4()
                            : asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
        std::copy(v4_mapped.begin(), v4_mapped.end(), key.bytes.begin());
        const auto b = v4.to_bytes();
        std::copy(b.begin(), b.end(), key.bytes.begin() + 12);
        cut(key.bytes, 96 + v4_prefix);
    } else {
        key.bytes = address.to_v6().to_bytes();
        cut(key.bytes, v6_prefix);
    }
    return key;
}

source_key whole_source_key(const asio::ip::tcp::endpoint& client) noexcept {
    source_key key;
    const sockaddr* address = client.data();
    if (address->sa_family == AF_INET) {
        std::copy(v4_mapped.begin(), v4_mapped.end(), key.bytes.begin());
        std::memcpy(key.bytes.data() + v4_mapped.size(),
                    &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, 4);
    } else {
        // An IPv4-mapped address is already spelled as its IPv4 client's key.
        std::memcpy(key.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr,
                    key.bytes.size());
    }
    return key;
}

bool is_v4(const source_key& key) noexcept {
    return std::equal(v4_mapped.begin(), v4_mapped.end(), key.bytes.begin());
}

source_key cut_source_key(const source_key& whole, unsigned prefix_bits) noexcept {
    source_key key = whole;
    cut(key.bytes, prefix_bits);
    return key;
}

unsigned source_bits(const source_key& whole, unsigned v4_prefix, unsigned v6_prefix) noexcept {
    return is_v4(whole) ? 96 + v4_prefix : v6_prefix;
}

network network::parse(const std::string& text) {
    const std::size_t slash = text.find('/');
    const auto address = asio::ip::make_address(text.substr(0, slash));
    network n;
    n.v4 = address.is_v4();
    n.prefix = static_cast<unsigned>(std::stoul(text.substr(slash + 1)));
    n.base = make_source_key(address, n.prefix, n.prefix);
    return n;
}

bool network::contains(const asio::ip::address& address) const noexcept {
    const bool v4_client = address.is_v4() || address.to_v6().is_v4_mapped();
    return v4_client == v4 && make_source_key(address, prefix, prefix) == base;
}

bool trusted(const std::vector<network>& networks, const asio::ip::address& address) noexcept {
    return std::ranges::any_of(networks, [&](const network& n) { return n.contains(address); });
}

std::string to_string(const source_key& key, unsigned v4_prefix, unsigned v6_prefix) {
    if (is_v4(key)) {
        asio::ip::address_v4::bytes_type b;
        std::copy(key.bytes.begin() + 12, key.bytes.end(), b.begin());
        std::string out = asio::ip::address_v4(b).to_string();
        return v4_prefix < 32 ? out + "/" + std::to_string(v4_prefix) : out;
    }
    std::string out = asio::ip::address_v6(key.bytes).to_string();
    return v6_prefix < 128 ? out + "/" + std::to_string(v6_prefix) : out;
}

source_table::source_table(std::uint32_t limit, std::size_t max_sources)
    : limit_(limit), mask_(std::bit_ceil(std::max<std::size_t>(2 * max_sources + 1, 16)) - 1) {
    // One mapping from the OS, like the slabs: untouched pages cost nothing until a source lands.
    mapping_bytes_ = (mask_ + 1) * sizeof(entry);
    void* memory = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) throw std::bad_alloc();
    entries_ = static_cast<entry*>(memory);  // zero pages: every slot empty
}

source_table::~source_table() {
    ::munmap(entries_, mapping_bytes_);
}

std::size_t source_table::home(const source_key& key) const noexcept {
    std::uint64_t high = 0;
    std::uint64_t low = 0;
    std::memcpy(&high, key.bytes.data(), 8);
    std::memcpy(&low, key.bytes.data() + 8, 8);
    return static_cast<std::size_t>(mix(high ^ hash_seed) ^ mix(low + hash_seed)) & mask_;
}

source_table::verdict source_table::acquire(const source_key& key) noexcept {
    std::lock_guard lock(mutex_);
    for (std::size_t i = home(key);; i = (i + 1) & mask_) {
        entry& e = entries_[i];
        if (e.connections == 0) {
            // Half full at most by construction; past that, probes grow long: refuse instead.
            if (2 * (used_ + 1) > mask_ + 1) [[unlikely]]
                return verdict::table_full;
            e.key = key;
            e.connections = 1;
            ++used_;
            return verdict::admitted;
        }
        if (e.key == key) {
            if (e.connections >= limit_.load(std::memory_order_relaxed)) return verdict::over_limit;
            ++e.connections;
            return verdict::admitted;
        }
    }
}

void source_table::release(const source_key& key) noexcept {
    std::lock_guard lock(mutex_);
    std::size_t i = home(key);
    while (entries_[i].connections != 0 && !(entries_[i].key == key)) i = (i + 1) & mask_;
    if (entries_[i].connections == 0) [[unlikely]]
        return;  // never acquired: nothing to give back
    if (--entries_[i].connections != 0) return;
    --used_;
    // Backward-shift deletion: pull later entries of the chain into the hole, so that every
    // entry stays reachable from its home without tombstones.
    for (std::size_t hole = i, j = (i + 1) & mask_;; j = (j + 1) & mask_) {
        if (entries_[j].connections == 0) {
            entries_[hole].connections = 0;
            return;
        }
        const std::size_t want = home(entries_[j].key);
        // Move j into the hole unless its home lies cyclically in (hole, j].
        const bool stays = hole <= j ? (hole < want && want <= j) : (hole < want || want <= j);
        if (stays) continue;
        entries_[hole] = entries_[j];
        hole = j;
    }
}

std::vector<source_table::holder> source_table::top(std::size_t n) const {
    // A chunk at a time, so that accepts and closes on every shard wait for one chunk at most,
    // never for the whole table. An entry a deletion shifts into a chunk already read is missed:
    // a moment's approximation, which is all a list of the largest holders needs.
    constexpr std::size_t chunk = 4096;
    std::vector<holder> out;
    for (std::size_t start = 0; start <= mask_; start += chunk) {
        std::lock_guard lock(mutex_);
        for (std::size_t i = start; i <= mask_ && i < start + chunk; ++i)
            if (entries_[i].connections != 0)
                out.push_back({entries_[i].key, entries_[i].connections});
    }
    const auto most = [](const holder& a, const holder& b) {
        return a.connections > b.connections;
    };
    const std::size_t keep = std::min(n, out.size());
    std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep), out.end(),
                      most);
    out.resize(keep);
    return out;
}

std::size_t source_table::sources() const noexcept {
    std::lock_guard lock(mutex_);
    return used_;
}

accept_rate_limiter::accept_rate_limiter(std::uint32_t rate, std::uint32_t burst) noexcept
    : last_(clock::now()) {
    configure(rate, burst);
    tokens_ = burst_;
}

void accept_rate_limiter::configure(std::uint32_t rate, std::uint32_t burst) noexcept {
    std::lock_guard lock(mutex_);
    refill(clock::now());
    rate_per_ns_ = static_cast<double>(rate) / 1e9;
    burst_ = static_cast<double>(std::max(burst, 1u));
    tokens_ = std::min(tokens_, burst_);
    enabled_.store(rate > 0, std::memory_order_relaxed);
}

void accept_rate_limiter::refill(clock::time_point now) noexcept {
    if (now <= last_ || rate_per_ns_ == 0) return;
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(elapsed) * rate_per_ns_);
    last_ = now;
}

bool accept_rate_limiter::try_take(clock::time_point now) noexcept {
    std::lock_guard lock(mutex_);
    refill(now);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
}

accept_rate_limiter::clock::duration accept_rate_limiter::until_next(
    clock::time_point now) noexcept {
    std::lock_guard lock(mutex_);
    refill(now);
    if (tokens_ >= 1.0 || rate_per_ns_ == 0) return clock::duration::zero();
    return std::chrono::nanoseconds(static_cast<std::int64_t>((1.0 - tokens_) / rate_per_ns_) + 1);
}

}  // namespace slabd::server
