module kondukt.local/real-node/pause

go 1.26
