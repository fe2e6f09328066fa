// The corpus as a regression test: runs every file of the directories (or the files) given on the
// command line through LLVMFuzzerTestOneInput once, as libFuzzer's -runs=0 would. A crash or a
// sanitizer report fails the test; an empty corpus does too, since it would prove nothing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::filesystem::path> inputs_of(const std::filesystem::path& arg) {
    std::vector<std::filesystem::path> files;
    if (!std::filesystem::is_directory(arg)) return {arg};
    for (const auto& entry : std::filesystem::recursive_directory_iterator(arg))
        if (entry.is_regular_file()) files.push_back(entry.path());
    std::ranges::sort(files);  // a failure names the same input on every run
    return files;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t ran = 0;
    for (int i = 1; i < argc; ++i) {
        for (const auto& path : inputs_of(argv[i])) {
            std::ifstream in(path, std::ios::binary);
            if (!in) {
                std::fprintf(stderr, "cannot read %s\n", path.c_str());
                return 1;
            }
            const std::vector<char> bytes{std::istreambuf_iterator<char>(in), {}};
            std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), bytes.size());
            // A copy of exactly the input's size: ASan then catches a read one past its end.
            const std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
            LLVMFuzzerTestOneInput(data.data(), data.size());
            ++ran;
        }
    }
    std::fprintf(stderr, "%zu inputs ran\n", ran);
    return ran > 0 ? 0 : 1;
}
