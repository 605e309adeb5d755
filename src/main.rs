fn main() {
    println!("calico-charm");
}
